"""Shared fixtures of the readout tests."""
import pytest

import regconsist_ros.learning.trainer as _trainer


@pytest.fixture
def fits(monkeypatch):
    """Records every Trainer.fit: (trainer, the lr of the optimiser at each forward)."""
    calls = []
    real = _trainer.Trainer.fit

    def spy(self, batches, *a, **kw):
        lrs = []
        calls.append((self, lrs))
        forward = self.objective.forward

        def watched(batch):
            lrs.append([g["lr"] for g in self.opt.param_groups])
            return forward(batch)

        self.objective.forward = watched
        try:
            return real(self, batches, *a, **kw)
        finally:
            del self.objective.forward

    monkeypatch.setattr(_trainer.Trainer, "fit", spy)
    return calls
