"""One action space for GUI agents on three platforms, as data: what each action is called, which
points it needs and which arguments it takes.

=========  =====================================================================================
desktop    ``click``, ``double_click``, ``right_click``, ``type``, ``hotkey``, ``scroll``, ``drag``
mobile     ``tap``, ``long_press``, ``swipe``, ``type``, ``back``, ``home``
web        ``click``, ``type``, ``select``, ``scroll``, ``navigate``
=========  =====================================================================================

An action *at a place* is a ``point`` annotation with ``action`` set (in screenshot pixels, the
coordinates the loader moves with augmentation); ``drag`` and ``swipe`` name their end point by
``attrs.to`` (the index of a second point annotation on the same screenshot). Its arguments are
``attrs.args`` (``text`` for ``type``, ``option`` for ``select``, ``direction``/``amount`` for
``scroll``). Text refers to it by the ``{action:i}`` placeholder, rendered only at tokenization
time: ``click(x=512, y=300)``, ``type(x=80, y=41, text="sqlite")``,
``drag(x=10, y=20, x2=300, y2=20)``. Actions with no place (``hotkey``, ``back``, ``home``,
``navigate``, ``type`` into the focused field) are written in the same syntax in the text
(:func:`format_action`), since there is nothing to move.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

__all__ = ["PLATFORMS", "ACTIONS", "POINTED", "TWO_POINT", "ARGS", "check_action", "format_action"]

PLATFORMS: dict[str, tuple[str, ...]] = {
    "desktop": ("click", "double_click", "right_click", "type", "hotkey", "scroll", "drag"),
    "mobile": ("tap", "long_press", "swipe", "type", "back", "home"),
    "web": ("click", "type", "select", "scroll", "navigate"),
}
ACTIONS: tuple[str, ...] = tuple(dict.fromkeys(a for acts in PLATFORMS.values() for a in acts))
#: actions that may be tied to a point annotation
POINTED = frozenset({"click", "double_click", "right_click", "type", "scroll", "drag", "tap", "long_press",
                     "swipe", "select"})
#: actions that need an end point (``attrs.to``)
TWO_POINT = frozenset({"drag", "swipe"})
#: arguments each action takes (name -> JSON type), in rendering order
ARGS: dict[str, dict[str, type | tuple[type, ...]]] = {
    "type": {"text": str},
    "hotkey": {"keys": str},
    "scroll": {"direction": str, "amount": int},
    "select": {"option": str},
    "navigate": {"url": str},
}
DIRECTIONS = ("up", "down", "left", "right")


def check_action(name: str, args: Mapping[str, Any] | None, platform: str | None = None) -> str | None:
    """Why ``name(args)`` is not a valid action (on ``platform``), or None."""
    if name not in ACTIONS:
        return f"unknown action {name!r}; known: {', '.join(ACTIONS)}"
    if platform is not None:
        if platform not in PLATFORMS:
            return f"unknown platform {platform!r}; known: {', '.join(PLATFORMS)}"
        if name not in PLATFORMS[platform]:
            return f"{name!r} is not a {platform} action ({', '.join(PLATFORMS[platform])})"
    spec = ARGS.get(name, {})
    for k, v in (args or {}).items():
        if k not in spec:
            return f"{name} takes no argument {k!r}" + (f" (takes {', '.join(spec)})" if spec else "")
        if isinstance(v, bool) or not isinstance(v, spec[k]):
            return f"{name}: argument {k!r} must be {spec[k].__name__}, got {v!r}"  # type: ignore[union-attr]
    if name == "scroll" and (args or {}).get("direction", "down") not in DIRECTIONS:
        return f"scroll: direction must be one of {DIRECTIONS}"
    return None


def format_action(name: str, points: list[tuple[str, str]] | None = None, args: Mapping[str, Any] | None = None) -> str:
    """``name(x=.., y=.., key="value")``: ``points`` are already-formatted coordinate pairs."""
    parts = []
    for i, (x, y) in enumerate(points or []):
        suffix = "" if i == 0 else str(i + 1)
        parts += [f"x{suffix}={x}", f"y{suffix}={y}"]
    for k in ARGS.get(name, {}):
        if args and k in args:
            v = args[k]
            parts.append(f"{k}={json.dumps(v, ensure_ascii=False) if isinstance(v, str) else v}")
    return f"{name}({', '.join(parts)})"
