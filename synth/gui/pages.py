"""Generated GUI pages: seeded templates with randomised content, layout and theme.

``site(seed, index, platform)`` returns a :class:`Site`: the HTML files of one small web app (a
pure function of its arguments) and the tasks it supports. Pages are composed of components --
a top bar (sometimes sticky), toolbars of icon-only buttons (real Adwaita symbolic icons inlined
as SVG with ``aria-label``/``title``), forms (text, email, select, checkbox, radio, date), menus
with dropdowns, modal dialogs, tabs, tables with row actions, settings panels with switches,
search with results, a long section that needs scrolling, and for mobile an app screen with a
bottom navigation bar, cards and a floating action button -- in a light or dark theme with a
random font, size and density. Decoys the collector must never emit as targets are mixed in:
``display:none``/``visibility:hidden``/transparent buttons, disabled ones, a cookie banner or an
open modal over the content, fixed bars over scrolled content.

Every state change is visible in ``#status`` (and in ``location.hash`` for views), which is what
the tasks' success conditions check.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["ICONS", "Site", "Task", "site", "icon_svg", "unavailable_reason"]

ICON_DIR = Path("/usr/share/icons/Adwaita/scalable")
#: Adwaita symbolic icon -> what it means (its label in the generated UI)
ICONS: dict[str, str] = {
    "document-save": "Save", "edit-delete": "Delete", "edit-copy": "Copy", "edit-paste": "Paste",
    "edit-cut": "Cut", "edit-undo": "Undo", "edit-redo": "Redo", "document-open": "Open",
    "document-print": "Print", "system-search": "Search", "list-add": "Add", "list-remove": "Remove",
    "go-home": "Home", "go-previous": "Back", "go-next": "Forward", "view-refresh": "Refresh",
    "mail-send": "Send", "user-trash": "Trash", "emblem-favorite": "Favourite", "preferences-system": "Settings",
    "help-about": "About", "zoom-in": "Zoom in", "zoom-out": "Zoom out", "media-playback-start": "Play",
    "media-playback-pause": "Pause", "audio-volume-high": "Volume", "format-text-bold": "Bold",
    "format-text-italic": "Italic", "document-new": "New document", "open-menu": "Menu", "window-close": "Close",
    "view-more": "More options", "starred": "Star", "avatar-default": "Account", "mail-unread": "Inbox",
    "camera-photo": "Camera", "call-start": "Call", "find-location": "Location", "document-edit": "Edit",
    "bookmark-new": "Bookmark", "emblem-shared": "Share",
}
FONTS = ("DejaVu Sans", "DejaVu Serif", "Liberation Sans", "Liberation Serif", "Liberation Mono")
THEMES = {
    "light": {"bg": "#ffffff", "fg": "#1d1d1f", "panel": "#f3f4f6", "line": "#d0d4da", "accent": "hsl({h},65%,42%)"},
    "dark": {"bg": "#17181c", "fg": "#e8e8ea", "panel": "#24262c", "line": "#3a3d45", "accent": "hsl({h},70%,62%)"},
}
PEOPLE = ("Ada Lovelace", "Alan Turing", "Grace Hopper", "Edsger Dijkstra", "Barbara Liskov", "Donald Knuth",
          "Frances Allen", "John Backus", "Margaret Hamilton", "Ken Thompson", "Radia Perlman", "Niklaus Wirth")
PLANS = ("Free", "Basic", "Pro", "Team", "Enterprise")
SIZES = ("Small", "Medium", "Large")
WORDS = ("alpha", "harbour", "granite", "meadow", "quartz", "lantern", "orchid", "summit", "willow", "cobalt",
         "ember", "falcon", "glacier", "juniper", "kestrel", "lagoon", "marble", "nectar", "onyx", "prairie")
MENUS = {"File": ("New", "Open", "Export", "Print"), "Edit": ("Undo", "Redo", "Find", "Replace"),
         "View": ("Zoom in", "Zoom out", "Full screen", "Sidebar"), "Help": ("Docs", "Shortcuts", "About")}
SETTINGS = ("Notifications", "Dark mode", "Auto-save", "Location access", "Two-factor login", "Beta features")


def unavailable_reason() -> str | None:
    if not ICON_DIR.is_dir():
        return f"generated GUI pages need the Adwaita icons at {ICON_DIR}: apt-get install adwaita-icon-theme"
    return None


@cache
def icon_svg(name: str, size: int = 20) -> str:
    """The Adwaita symbolic icon ``name`` as inline SVG that takes the text colour."""
    files = sorted(ICON_DIR.glob(f"*/{name}-symbolic.svg"))
    if not files:
        raise FileNotFoundError(f"no Adwaita icon {name!r} under {ICON_DIR}")
    svg = files[0].read_text()
    svg = re.sub(r"<\?xml[^>]*\?>", "", svg).strip()
    svg = re.sub(r'\s(height|width)="[^"]*"', "", svg, count=2)
    svg = svg.replace("<svg", f'<svg width="{size}" height="{size}" aria-hidden="true" focusable="false"', 1)
    return re.sub(r'fill="#[0-9a-fA-F]{3,6}"', 'fill="currentColor"', svg)


@dataclass(frozen=True)
class Task:
    """One task a trajectory can do on the site: ``kind`` with its parameters; ``goal`` is the
    instruction given to the agent; ``success`` what must hold at the end
    (``{"status": text}`` or ``{"hash": "#..."}`` or ``{"path": "/x.html"}``)."""

    kind: str
    goal: str
    params: dict[str, Any]
    success: dict[str, str]


@dataclass
class Site:
    files: dict[str, str]
    tasks: list[Task] = field(default_factory=list)
    start: str = "/index.html"
    meta: dict[str, Any] = field(default_factory=dict)

    def write(self, root: Path) -> Path:
        root.mkdir(parents=True, exist_ok=True)
        for path, text in self.files.items():
            p = root / path.lstrip("/")
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(text, encoding="utf-8")
        return root


class _Builder:
    def __init__(self, rng: np.random.Generator, platform: str) -> None:
        self.rng, self.platform = rng, platform
        self.parts: list[str] = []
        self.tasks: list[Task] = []
        self.icon_names = list(ICONS)

    def pick(self, seq: Any, k: int | None = None) -> Any:
        if k is None:
            return seq[int(self.rng.integers(len(seq)))]
        return [seq[int(i)] for i in self.rng.permutation(len(seq))[:k]]

    def button(self, label: str, fn: str, *, cls: str = "btn", extra: str = "") -> str:
        return (f'<button type="button" class="{cls}" data-fn="{html.escape(fn)}" '
                f'onclick="mmStatus({html.escape(repr(label + " clicked"))})" {extra}>{html.escape(label)}</button>')

    def icon_button(self, icon: str, fn: str | None = None) -> str:
        label = ICONS[icon]
        title = f' title="{html.escape(label)}"' if self.rng.random() < 0.6 else ""
        fn = fn or f"{label.lower()}s the current item"
        return (f'<button type="button" class="icon" aria-label="{html.escape(label)}"{title} data-fn="{html.escape(fn)}" '
                f'onclick="mmStatus({html.escape(repr(label + " clicked"))})">{icon_svg(icon)}</button>')

    def decoys(self) -> str:
        """Buttons that must never become targets."""
        out = []
        for style, label in (("display:none", "Hidden action"), ("visibility:hidden", "Invisible action"),
                             ("opacity:0", "Transparent action")):
            if self.rng.random() < 0.5:
                out.append(f'<button type="button" class="btn" style="{style}">{label}</button>')
        if self.rng.random() < 0.6:
            out.append('<button type="button" class="btn" disabled>Unavailable</button>')
        return "".join(out)

    # -- components ---------------------------------------------------------------------------
    def topbar(self, title: str, sticky: bool) -> None:
        links = self.pick(["Overview", "Reports", "Projects", "Team", "Billing", "Docs"], int(self.rng.integers(3, 6)))
        nav = "".join(f'<a href="#{x.lower()}" data-fn="opens the {x} view">{x}</a>' for x in links)
        icons = "".join(self.icon_button(i) for i in self.pick(["system-search", "preferences-system",
                                                                 "avatar-default", "mail-unread", "help-about"], 2))
        self.parts.append(f'<header class="top{" sticky" if sticky else ""}"><b class="brand">{html.escape(title)}</b>'
                          f'<nav aria-label="Main">{nav}</nav><span class="tools">{icons}</span></header>')

    def toolbar(self) -> None:
        icons = self.pick(self.icon_names, int(self.rng.integers(5, 11)))
        self.parts.append('<div class="toolbar" role="toolbar" aria-label="Editor tools">'
                          + "".join(self.icon_button(i) for i in icons) + "</div>")
        label = ICONS[self.pick(icons)]
        self.tasks.append(Task("click", f"Use the {label} tool.", {"steps": [[label, "button", "Editor tools"]]},
                               {"status": f"{label} clicked"}))

    def form(self) -> None:
        person = self.pick(PEOPLE)
        plan, size = self.pick(PLANS), self.pick(SIZES)
        native_select = self.platform == "web"
        plan_field = (f'<label>Plan <select id="plan" name="plan">{"".join(f"<option>{p}</option>" for p in PLANS)}'
                      '</select></label>' if native_select else
                      '<fieldset><legend>Plan</legend>' + "".join(
                          f'<label><input type="radio" name="plan" value="{p}"> {p}</label>' for p in PLANS[:4])
                      + "</fieldset>")
        if not native_select and plan not in PLANS[:4]:
            plan = PLANS[int(self.rng.integers(4))]
        sizes = "".join(f'<label><input type="radio" name="size" value="{s}"> {s}</label>' for s in SIZES)
        self.parts.append(
            '<section class="card" id="signup"><h2>Sign up</h2><form id="f" onsubmit="return mmSubmit(event)">'
            '<label>Full name <input id="name" name="name" type="text" placeholder="Your name" autocomplete="off"></label>'
            '<label>Email <input id="email" name="email" type="email" placeholder="name@example.org" autocomplete="off">'
            f'</label>{plan_field}<fieldset><legend>Size</legend>{sizes}</fieldset>'
            '<label>Start date <input id="date" name="date" type="date"></label>'
            '<label class="check"><input id="agree" type="checkbox" name="agree"> I accept the terms</label>'
            '<button type="submit" class="btn primary" data-fn="submits the sign-up form">Create account</button>'
            + self.decoys() + '</form><p id="result" aria-live="polite"></p></section>')
        email = person.split()[0].lower() + "@example.org"
        fields = [{"field": "name", "text": person}, {"field": "email", "text": email},
                  {"field": "plan", "option": plan}, {"field": "size", "option": size}, {"field": "agree"}]
        self.tasks.append(Task("form", f"Sign up as {person} ({email}) on the {plan} plan, size {size}, and "
                                       "accept the terms.", {"fields": fields},
                               {"status": f"Welcome {person}: {plan}, {size}"}))

    def menu(self) -> None:
        names = self.pick(list(MENUS), int(self.rng.integers(2, 5)))
        bar = "".join(
            f'<div class="menu"><button type="button" class="menubtn" aria-haspopup="menu" aria-expanded="false" '
            f'data-fn="opens the {m} menu" onclick="mmMenu(this)">{m}</button><div class="dropdown" role="menu" hidden>'
            + "".join(f'<button type="button" role="menuitem" data-fn="runs {m} &gt; {it}" '
                      f'onclick="mmStatus({html.escape(repr(m + " > " + it))}); mmCloseMenus()">{it}</button>'
                      for it in MENUS[m]) + "</div></div>" for m in names)
        self.parts.append(f'<div class="menubar" role="menubar">{bar}</div>')
        m = self.pick(names)
        item = self.pick(MENUS[m])
        self.tasks.append(Task("menu", f"Choose {item} from the {m} menu.", {"steps": [[m, "button", "menubar"], [item, "menuitem", "menu"]]},
                               {"status": f"{m} > {item}"}))

    def tabs(self) -> None:
        names = self.pick(["General", "Security", "Billing", "Members", "Activity", "Integrations"],
                          int(self.rng.integers(3, 6)))
        tabs = "".join(f'<button type="button" role="tab" aria-selected="{str(i == 0).lower()}" data-fn="shows the {t} tab" '
                       f'onclick="mmTab(this, {i})">{t}</button>' for i, t in enumerate(names))
        panels = "".join(f'<div role="tabpanel" {"" if i == 0 else "hidden"}><p>{t} settings for your workspace.</p>'
                         f'{self.button("Save " + t.lower(), "saves the " + t + " settings")}</div>'
                         for i, t in enumerate(names))
        self.parts.append(f'<section class="card"><div role="tablist" aria-label="Sections">{tabs}</div>{panels}</section>')
        t = self.pick(names[1:])
        self.tasks.append(Task("menu", f"Open the {t} tab and save its settings.",
                               {"steps": [[t, "tab", "Sections"], ["Save " + t.lower(), "button", None]]}, {"status": f"Save {t.lower()} clicked"}))

    def table(self) -> None:
        rows = self.pick(list(WORDS), int(self.rng.integers(3, 7)))
        body = "".join(f'<tr><td>{w.title()}</td><td>{int(self.rng.integers(1, 999))}</td><td class="acts">'
                       + self.icon_button("document-edit", f"edits the {w.title()} row")
                       + self.icon_button("edit-delete", f"deletes the {w.title()} row") + "</td></tr>" for w in rows)
        self.parts.append('<section class="card"><h2>Inventory</h2><table><thead><tr><th>Item</th><th>Count</th>'
                          f'<th>Actions</th></tr></thead><tbody>{body}</tbody></table></section>')

    def settings(self) -> None:
        names = self.pick(list(SETTINGS), int(self.rng.integers(3, 6)))
        items = "".join(f'<div class="row"><span>{s}</span><button type="button" role="switch" aria-checked="false" '
                        f'aria-label="{s}" class="switch" data-fn="turns {s.lower()} on or off" '
                        f'onclick="mmSwitch(this)"><i></i></button></div>' for s in names)
        self.parts.append(f'<section class="card"><h2>Settings</h2>{items}</section>')
        name = self.pick(names)
        self.tasks.append(Task("click", f"Turn on {name.lower()}.", {"steps": [[name, "switch", None]]},
                               {"status": f"{name} on"}))

    def search(self) -> None:
        items = self.pick([f"{a.title()} {b}" for a in WORDS[:10] for b in ("report", "guide", "notes")], 8)
        target = self.pick(items)
        data = html.escape(repr(items))
        self.parts.append(
            f'<section class="card" id="searchbox" data-items="{data}"><h2>Search</h2>'
            '<form onsubmit="return mmSearch(event)"><input id="q" type="search" aria-label="Search query" '
            'placeholder="Search documents" autocomplete="off"><button type="submit" class="btn" '
            'data-fn="runs the search">Search</button></form><ul id="results"></ul></section>')
        self.tasks.append(Task("search", f"Search for \"{target.split()[0]}\" and open \"{target}\".",
                               {"query": target.split()[0], "result": target}, {"status": f"Opened {target}"}))

    def long_section(self) -> None:
        filler = "".join(f"<p>{' '.join(self.pick(list(WORDS), 12))}.</p>" for _ in range(int(self.rng.integers(8, 16))))
        label = self.pick(["Load more", "Show archive", "Contact sales", "Download report"])
        self.parts.append(f'<section class="card long"><h2>Updates</h2>{filler}'
                          f'{self.button(label, "at the end of the updates, " + label.lower())}</section>')
        self.tasks.append(Task("scroll", f"Scroll down and click \"{label}\".", {"label": label},
                               {"status": f"{label} clicked"}))

    def modal(self, open_at_start: bool) -> None:
        self.parts.append(
            f'<div class="overlay" id="modal" {"" if open_at_start else "hidden"}><div class="dialog" role="dialog" '
            'aria-modal="true" aria-labelledby="mt"><h2 id="mt">Before you continue</h2><p>We use cookies to keep '
            'you signed in.</p>' + self.button("Accept", "accepts and closes the dialog", extra='data-close="1"')
            + self.button("Decline", "declines and closes the dialog", extra='data-close="1"') + "</div></div>")
        if not open_at_start:
            self.parts.insert(0, '<div class="card">' + self.button("Open dialog", "opens the cookie dialog",
                                                                    extra='data-open="modal"') + "</div>")

    def mobile_screen(self, title: str) -> None:
        cards = "".join(f'<article class="mcard"><h3>{w.title()}</h3><p>{" ".join(self.pick(list(WORDS), 8))}</p>'
                        + self.button("Open", f"opens the {w.title()} card", extra=f'aria-label="Open {w.title()}"')
                        + "</article>" for w in self.pick(list(WORDS), int(self.rng.integers(4, 9))))
        nav = self.pick(["go-home", "system-search", "mail-unread", "avatar-default", "preferences-system"], 4)
        bottom = "".join(f'<button type="button" class="tab" aria-label="{ICONS[i]}" data-fn="opens {ICONS[i]}" '
                         f'onclick="mmStatus({html.escape(repr(ICONS[i] + " clicked"))})">{icon_svg(i, 24)}'
                         f'<span>{ICONS[i]}</span></button>' for i in nav)
        self.parts.append(f'<header class="appbar">{self.icon_button("open-menu")}<b>{html.escape(title)}</b>'
                          f'{self.icon_button("system-search")}</header><main class="cards">{cards}</main>'
                          f'<nav class="bottomnav" aria-label="Bottom">{bottom}</nav>'
                          + self.icon_button("list-add", "adds a new item").replace('class="icon"', 'class="icon fab"'))


def _css(rng: np.random.Generator, theme: str, mobile: bool) -> str:
    t = {k: v.format(h=int(rng.integers(0, 360))) for k, v in THEMES[theme].items()}
    font = FONTS[int(rng.integers(len(FONTS)))]
    size = int(rng.integers(14, 19)) + (2 if mobile else 0)
    pad = float(rng.choice([0.6, 1.0, 1.4]))
    return (
        f"*{{box-sizing:border-box}} body{{margin:0;background:{t['bg']};color:{t['fg']};font:{size}px '{font}';"
        f"line-height:1.4}} a{{color:{t['accent']}}} .top{{display:flex;gap:{16 * pad}px;align-items:center;"
        f"padding:{8 * pad}px {16 * pad}px;background:{t['panel']};border-bottom:1px solid {t['line']}}}"
        ".top.sticky{position:sticky;top:0;z-index:5} .top nav{display:flex;gap:14px} .tools{margin-left:auto}"
        f".card{{background:{t['panel']};border:1px solid {t['line']};border-radius:8px;margin:{12 * pad}px;"
        f"padding:{12 * pad}px}} .btn{{font:inherit;padding:{5 * pad}px {12 * pad}px;border-radius:6px;"
        f"border:1px solid {t['line']};background:{t['bg']};color:{t['fg']};margin:4px}} .btn.primary{{"
        f"background:{t['accent']};color:#fff}} .icon{{display:inline-flex;align-items:center;justify-content:center;"
        f"width:{30 + 6 * pad}px;height:{30 + 6 * pad}px;border:0;border-radius:6px;background:transparent;"
        f"color:{t['fg']};margin:2px}} .toolbar{{display:flex;flex-wrap:wrap;gap:2px;margin:{12 * pad}px;padding:4px;"
        f"border:1px solid {t['line']};border-radius:8px}} form label{{display:block;margin:6px 0}} "
        "fieldset{border:0;padding:0;margin:6px 0} fieldset label{display:inline-block;margin-right:10px}"
        f"input,select{{font:inherit;padding:3px 6px;color:{t['fg']};background:{t['bg']};border:1px solid {t['line']}}}"
        "input[type=checkbox],input[type=radio]{width:16px;height:16px} .menubar{display:flex;gap:4px;margin:8px 12px}"
        f".menu{{position:relative}} .menubtn{{font:inherit;background:transparent;color:{t['fg']};border:0;"
        f"padding:6px 12px}} .dropdown{{position:absolute;top:100%;left:0;z-index:20;background:{t['bg']};"
        f"border:1px solid {t['line']};box-shadow:0 4px 12px #0004;min-width:160px}} .dropdown:not([hidden])"
        "{display:flex;flex-direction:column} .dropdown button{font:inherit;text-align:left;background:transparent;"
        f"color:{t['fg']};border:0;padding:8px 14px}} [role=tablist]{{display:flex;gap:4px;border-bottom:1px solid "
        f"{t['line']}}} [role=tab]{{font:inherit;background:transparent;color:{t['fg']};border:0;padding:8px 14px}}"
        f"[role=tab][aria-selected=true]{{border-bottom:3px solid {t['accent']}}} table{{border-collapse:collapse}}"
        f"td,th{{padding:4px 10px;border-bottom:1px solid {t['line']}}} .row{{display:flex;justify-content:"
        "space-between;align-items:center;padding:6px 0} .switch{width:44px;height:24px;border-radius:12px;"
        f"border:0;background:{t['line']};position:relative}} .switch i{{position:absolute;left:3px;top:3px;"
        "width:18px;height:18px;border-radius:9px;background:#fff} .switch[aria-checked=true]{background:"
        f"{t['accent']}}} .switch[aria-checked=true] i{{left:23px}} #results a{{display:inline-block;padding:2px}}"
        ".overlay{position:fixed;inset:0;background:#0008;z-index:50;display:flex;align-items:center;"
        f"justify-content:center}} .overlay[hidden]{{display:none}} .dialog{{background:{t['bg']};padding:24px;"
        "border-radius:10px;max-width:420px} .appbar{position:sticky;top:0;z-index:5;display:flex;align-items:"
        f"center;gap:12px;padding:8px;background:{t['accent']};color:#fff}} .appbar .icon{{color:#fff}} .appbar b"
        "{flex:1} .cards{padding:8px 8px 90px} .mcard{background:" + t['panel'] + ";border-radius:12px;padding:12px;"
        "margin:10px 0} .bottomnav{position:fixed;left:0;right:0;bottom:0;display:flex;justify-content:space-around;"
        f"background:{t['panel']};border-top:1px solid {t['line']};z-index:6}} .bottomnav .tab{{display:flex;"
        f"flex-direction:column;align-items:center;background:transparent;border:0;color:{t['fg']};padding:6px 10px;"
        "font:inherit;font-size:12px} .fab{position:fixed;right:18px;bottom:84px;width:56px;height:56px;border-radius:"
        f"28px;background:{t['accent']};color:#fff;z-index:7;box-shadow:0 3px 8px #0006}}"
        f".cookie{{position:fixed;left:0;right:0;bottom:0;z-index:30;background:{t['panel']};padding:14px;"
        f"border-top:2px solid {t['accent']}}}")


JS = r"""
function mmStatus(t){document.getElementById('status').textContent=t;}
function mmCloseMenus(){document.querySelectorAll('.dropdown').forEach(d=>{d.hidden=true;});
  document.querySelectorAll('.menubtn').forEach(b=>b.setAttribute('aria-expanded','false'));}
function mmMenu(b){const d=b.nextElementSibling, open=d.hidden; mmCloseMenus(); d.hidden=!open;
  b.setAttribute('aria-expanded', String(open));}
function mmTab(b,i){const tl=b.parentElement; tl.querySelectorAll('[role=tab]').forEach((t,j)=>t.setAttribute(
  'aria-selected', String(j===i))); const ps=tl.parentElement.querySelectorAll('[role=tabpanel]');
  ps.forEach((p,j)=>{p.hidden=j!==i;}); mmStatus(b.textContent+' tab');}
function mmSwitch(b){const on=b.getAttribute('aria-checked')!=='true'; b.setAttribute('aria-checked',String(on));
  mmStatus(b.getAttribute('aria-label')+(on?' on':' off'));}
function mmSubmit(e){e.preventDefault(); const f=e.target; const v=n=>{const el=f.elements[n];
  return el?(el.value||''):'';}; const plan=(f.querySelector('select[name=plan]')||{}).value||
  ((f.querySelector('input[name=plan]:checked')||{}).value)||''; const size=((f.querySelector(
  'input[name=size]:checked')||{}).value)||''; if(!f.elements.agree.checked||!v('name')){mmStatus(
  'Please fill in the form'); return false;} const msg='Welcome '+v('name')+': '+plan+', '+size;
  document.getElementById('result').textContent=msg; mmStatus(msg); return false;}
function mmSearch(e){e.preventDefault(); const box=document.getElementById('searchbox');
  const items=JSON.parse(box.dataset.items.replace(/'/g,'"')); const q=document.getElementById('q').value
  .toLowerCase(); const ul=document.getElementById('results'); ul.innerHTML='';
  items.filter(x=>x.toLowerCase().includes(q)).forEach((x,i)=>{const li=document.createElement('li');
  const a=document.createElement('a'); a.href='#item-'+i; a.textContent=x; a.dataset.fn='opens '+x;
  a.onclick=()=>mmStatus('Opened '+x); li.appendChild(a); ul.appendChild(li);}); mmStatus('Results for '+q);
  return false;}
document.addEventListener('click',e=>{const t=e.target.closest('[data-close]'); if(t){t.closest('.overlay')
  .hidden=true;} const o=e.target.closest('[data-open]'); if(o){document.getElementById(o.dataset.open)
  .hidden=false;} const d=e.target.closest('[data-dismiss]'); if(d){d.parentElement.remove();}
  if(!e.target.closest('.menu')){mmCloseMenus();}});
"""


def site(seed: int, index: int, platform: str = "desktop") -> Site:
    """The generated app ``index`` for ``platform`` (desktop, web or mobile): a pure function."""
    if platform not in ("desktop", "web", "mobile"):
        raise ValueError(f"platform must be desktop, web or mobile, got {platform!r}")
    rng = np.random.default_rng([seed, index, 0x6A1])
    b = _Builder(rng, platform)
    theme = "dark" if rng.random() < 0.35 else "light"
    title = f"{b.pick(list(WORDS)).title()} {b.pick(['Studio', 'Console', 'Desk', 'Hub', 'Works'])}"
    mobile = platform == "mobile"
    if mobile:
        b.mobile_screen(title)
        comps = b.pick(["form", "search", "settings", "long_section"], int(rng.integers(1, 3)))
    else:
        b.topbar(title, sticky=bool(rng.random() < 0.5))
        comps = b.pick(["toolbar", "form", "menu", "tabs", "table", "settings", "search", "long_section"],
                       int(rng.integers(3, 6)))
    for c in comps:
        getattr(b, c)()
    modal = rng.random()
    if modal < 0.15:
        b.modal(open_at_start=True)
    elif modal < 0.35:
        b.modal(open_at_start=False)
    if rng.random() < 0.25:
        b.parts.append('<div class="cookie">This site stores preferences in your browser. '
                       + b.button("Got it", "dismisses the notice", extra='data-dismiss="1"')
                       + "</div>")
    doc = (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><meta name='viewport' "
           f"content='width=device-width, initial-scale=1'><title>{html.escape(title)}</title>"
           f"<style>{_css(rng, theme, mobile)}</style></head><body>{''.join(b.parts)}"
           f"<p id='status' role='status' class='card'>Ready</p><script>{JS}</script></body></html>")
    return Site({"/index.html": doc}, b.tasks, meta={"title": title, "theme": theme, "components": comps,
                                                     "platform": platform})
