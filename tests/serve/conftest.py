import os
import socket

import pytest


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ray_or_skip():
    try:
        import ray  # noqa: F401
        from ray import serve  # noqa: F401
        import tritonclient.http  # noqa: F401
    except ImportError as e:
        pytest.skip(f"needs ray[serve] and tritonclient[http] (pip install -e '.[test]'): {e}", allow_module_level=True)


def descendants(pid):
    """pids of every process below ``pid`` (from /proc), with their names."""
    children = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    stat = f.read()
                name = stat[stat.index("(") + 1:stat.rindex(")")]
                ppid = int(stat[stat.rindex(")") + 2:].split()[1])
            except (OSError, ValueError):
                continue
            children.setdefault(ppid, []).append((int(d), name))
    out, todo = {}, [pid]
    while todo:
        for c, name in children.get(todo.pop(), []):
            out[c] = name
            todo.append(c)
    return out


def alive(pids):
    left = {}
    for p, name in pids.items():
        try:
            with open(f"/proc/{p}/stat") as f:
                stat = f.read()
            if stat[stat.rindex(")") + 2] != "Z":
                left[p] = name
        except OSError:
            pass
    return left
