"""The suite's warning filters (pyproject.toml): a deprecation that our own code triggers fails
the test that reaches it, one raised inside a dependency is shown, not hidden."""

from __future__ import annotations

import warnings

import pytest


@pytest.mark.parametrize("module", ["adautomix.engine.train", "components.train", "pipeline.run"])
@pytest.mark.parametrize("category", [DeprecationWarning, PendingDeprecationWarning])
def test_a_deprecation_our_code_triggers_is_an_error(module, category):
    with pytest.raises(category):
        warnings.warn_explicit("old API", category, "x.py", 1, module=module)


def action_for(category: type[Warning], module: str) -> str:
    """What the warning filters in force do with `category` attributed to `module`: the first
    filter that matches decides, as in the warnings module itself."""
    for action, message, kind, pattern, lineno in warnings.filters:
        if (
            issubclass(category, kind)
            and (pattern is None or pattern.match(module))
            and lineno == 0
            and (message is None or message.match("old API"))
        ):
            return action
    return "default"


@pytest.mark.parametrize("category", [DeprecationWarning, PendingDeprecationWarning])
def test_a_deprecation_inside_a_dependency_is_shown_not_hidden(category):
    assert action_for(category, "torch.nn") == "default"
    assert action_for(category, "adautomix.engine.train") == "error"
