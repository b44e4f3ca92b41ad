"""Count a model's forward passes in tests of prediction (how many tiles each block runs, and resuming)."""


def count_forwards(model, fail_after=None) -> list[int]:
    """Wrap ``model.module.forward`` to record the batch size of every call; raise after ``fail_after`` calls."""
    calls = []
    forward = model.module.forward

    def counted(x):
        if fail_after is not None and len(calls) == fail_after:
            raise RuntimeError("interrupted")
        calls.append(len(x))
        return forward(x)

    model.module.forward = counted
    return calls
