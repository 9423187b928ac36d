"""The ONNX backend node suite on the CPU provider.

Every case passes except those listed in expected_failures.txt, each with a
reason. A listed case that now passes shows as XPASS: take it off the list.
"""
import pytest

from conformance.node_suite import load_cases, load_xfail, run_case

CASES = load_cases()
XFAIL = load_xfail()


def _param(case):
    name = case[0]
    marks = [pytest.mark.xfail(reason=XFAIL[name], strict=False)] if name in XFAIL else []
    return pytest.param(case, id=name, marks=marks)


@pytest.mark.parametrize("case", [_param(c) for c in CASES])
def test_node(case):
    run_case(case)


def test_xfail_list_names_real_cases():
    names = {c[0] for c in CASES}
    stale = sorted(set(XFAIL) - names)
    assert not stale, f"expected_failures.txt lists cases the installed onnx does not have: {stale[:10]}"


def test_pass_rate_at_least_98_percent():
    assert len(CASES) > 1000, "the node suite did not generate"
    assert 1 - len(XFAIL) / len(CASES) >= 0.98


def test_only_random_cases_are_expected_to_fail():
    # The list may only hold cases that cannot pass for a stated reason.
    assert all(reason.startswith("random values") for reason in XFAIL.values()), XFAIL
