"""The FireWorks query of a submitted study, and a matcher for it on plain documents."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the spec module imports RDKit; `dftflow status` does not need it
    from dftflow.workflows.spec import StudySpec


def study_query(spec: StudySpec) -> dict[str, Any]:
    """FireWorks query selecting the Fireworks of one submitted spec."""
    return {"spec.dftflow.spec_digest": spec.digest()}


def dotted(doc: dict[str, Any], key: str) -> Any:
    """The value at a dotted key (``"spec.dftflow.spec_digest"``) of ``doc``; ``None`` if absent."""
    for part in key.split("."):
        if not isinstance(doc, dict) or part not in doc:
            return None
        doc = doc[part]
    return doc


def matches(doc: dict[str, Any], query: dict[str, Any]) -> bool:
    """Whether ``doc`` satisfies ``query``: equality on dotted keys (what dftflow's queries are)."""
    return all(dotted(doc, k) == v for k, v in query.items())
