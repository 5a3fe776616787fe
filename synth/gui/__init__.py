"""GUI agent data collected in a real browser: dense grounding, icons and multi-step trajectories
for desktop, mobile and web, from generated pages, a folder of HTML (served on 127.0.0.1) or the
URLs of a running web app -- every emitted click target proven by clicking it.

- :mod:`synth.gui.pages`: seeded generated apps (forms, menus, dialogs, tabs, tables, settings,
  search, icon toolbars, mobile screens; light/dark themes) and the tasks they support.
- :mod:`synth.gui.browser`: the server, the device profiles, one Chromium reused across pages,
  the DOM probe (visibility, size, disabled, occlusion by ``elementFromPoint`` at five points)
  and real-click verification through a capture-phase listener.
- :mod:`synth.gui.collect`: screens to ``agent`` samples (grounding with several referring
  styles, icon crops and in-context icon boxes).
- :mod:`synth.gui.trajectories`: tasks executed for real, success-checked, as multi-image ChatML
  conversations with thoughts and ``{action:i}`` actions; :func:`~synth.gui.trajectories.replay`.

The action space is :mod:`datalake.actions`.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["summary"]


def summary(stats: Mapping[str, int]) -> str:
    """One line of a GUI run's statistics: screens per platform, verified targets, rejects by
    reason, trajectories succeeded of attempted (failures by reason)."""
    screens = {k.split(".", 1)[1]: v for k, v in stats.items() if k.startswith("screens.")}
    rejected = {k.rsplit(".", 1)[1]: v for k, v in stats.items() if k.startswith("elements.rejected.")}
    failed = {k.rsplit(".", 1)[1]: v for k, v in stats.items() if k.startswith("trajectories.failed.")}
    attempted = sum(v for k, v in stats.items() if k.startswith("trajectories.attempted."))
    parts = [f"{sum(screens.values())} screens ({', '.join(f'{k} {v}' for k, v in sorted(screens.items()))})",
             f"{stats.get('targets', 0)} click targets verified"]
    if rejected:
        parts.append("elements rejected: " + ", ".join(f"{k} {v}" for k, v in sorted(rejected.items(), key=lambda x: -x[1])))
    if attempted:
        parts.append(f"trajectories {stats.get('trajectories.succeeded', 0)}/{attempted} succeeded"
                     + (" (failed: " + ", ".join(f"{k} {v}" for k, v in failed.items()) + ")" if failed else "")
                     + f", {stats.get('trajectory_steps', 0)} steps")
    failed_pages = {k.rsplit(".", 1)[1]: v for k, v in stats.items() if k.startswith("pages.failed.")}
    if failed_pages:
        parts.append("pages failed: " + ", ".join(f"{k} {v}" for k, v in failed_pages.items()))
    return "; ".join(parts)
