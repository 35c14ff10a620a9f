import pytest
from backends.memory import MemoryBackend
from tests.backends import test_stateful as ts

@pytest.mark.parametrize("mut", ["due", "reverse", "version"])
def test_mut(mut, monkeypatch):
    if mut == "due":
        monkeypatch.setattr(MemoryBackend, "_unindex_due", lambda self, item: None)
    elif mut == "reverse":
        import backends.memory as m
        orig = m.bisect.bisect_left
        monkeypatch.setattr(m, "prefix_upper_bound", lambda p: None)
    else:
        orig_put = MemoryBackend._put
        from dataclasses import replace
        def bad(self, op):
            orig_put(self, replace(op, due_ms=None) if op.due_ms == 7 else op)
        monkeypatch.setattr(MemoryBackend, "_put", bad)
    with pytest.raises(Exception):
        ts.test_backend_matches_oracle("memory")
