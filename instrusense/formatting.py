"""Numbers as people read them, the same on every face (page, plot, CLI table)."""

from __future__ import annotations


def percent(confidence: float) -> str:
    """A confidence as a percentage: one decimal under 100 (0.995 → "99.5 %", never "100 %")."""
    value = 100.0 * float(confidence)
    text = f"{value:.1f}"
    return "100 %" if text == "100.0" else f"{text} %"


def seconds(value: float) -> str:
    """A time in seconds to 0.01 s, always two decimals ("0.00", "3.00", "3.75")."""
    return f"{float(value):.2f}"
