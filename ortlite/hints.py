"""How to install an extra: the one spelling every message of ortlite uses (a leaf module, importable
from anywhere without cycles)."""

# ortlite is not on the public package index: install hints name the extra and say how to get it from a
# checkout or from the repository (REPO_URL is a placeholder until the project publishes one).
REPO_URL = "<repo-url>"


def install_hint(extra: str, *alternatives: str) -> str:
    """How to install ``extra`` (and, as alternatives, ``alternatives``): from a checkout, or from git.

    install_hint("cuda12", "cuda13") -> "pip install -e '.[cuda12]' (or '.[cuda13]') in an ortlite checkout,
    or pip install 'ortlite[cuda12] @ git+<repo-url>'"."""
    alt = f" (or {' or '.join(repr(f'.[{a}]') for a in alternatives)})" if alternatives else ""
    return (f"pip install -e '.[{extra}]'{alt} in an ortlite checkout, "
            f"or pip install 'ortlite[{extra}] @ git+{REPO_URL}'")
