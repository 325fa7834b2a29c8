"""The bilan as JSON."""

from __future__ import annotations

from domain.bilan import Bilan


def render_json(bilan: Bilan) -> str:
    """Render the whole bilan, rows included, as JSON; decimals stay exact strings.

    Args:
        bilan: The bilan.

    Returns:
        The JSON text, indented by 2.
    """
    return bilan.model_dump_json(indent=2)
