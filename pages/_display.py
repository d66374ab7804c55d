"""How big things are drawn: one place for text and chart sizes, normal or in projector mode.

Projector mode (the sidebar's toggle, or `?projector=1` in the address) enlarges the page's text and
every chart so the back row of a classroom can read them. Pages take their chart heights and font sizes
from `display()`, and `style()` applies them to a plotly figure; app.py injects `css()` once.
"""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

PROJECTOR_KEY = "s7_projector"  # the sidebar toggle's state
PROJECTOR_PARAM = "projector"  # ?projector=1 turns it on from a link


@dataclass(frozen=True)
class Display:
    """Sizes for one display mode."""

    name: str
    text_px: int  # the page's base font size; Streamlit sizes its text in rem, so everything follows
    chart_font_px: int  # plotly text: ticks, legends, hover
    title_font_px: int  # plotly titles
    chart_px: int  # the height of an ordinary chart
    tall_px: int  # the height of a picture (an image with boxes, a confusion matrix)
    small_px: int  # the height of a small chart in a row of three
    panels_per_row: int  # small multiples across the page (the RF picture, feature-map grids)
    line_px: float  # plotly line width


NORMAL = Display("normal", 16, 14, 17, 380, 560, 300, 6, 2.5)
PROJECTOR = Display("projector", 21, 20, 24, 480, 680, 380, 4, 4.0)


def projector_on() -> bool:
    """Whether projector mode is on in this session (the address's ?projector=1 turns it on at first)."""
    if PROJECTOR_KEY not in st.session_state:
        st.session_state[PROJECTOR_KEY] = st.query_params.get(PROJECTOR_PARAM) == "1"
    return bool(st.session_state[PROJECTOR_KEY])


def display() -> Display:
    """The sizes in force in this session."""
    return PROJECTOR if projector_on() else NORMAL


def style(fig, height: int | None = None, legend_below: bool = True):
    """`fig` with the display's fonts, line widths and `height` (default: an ordinary chart's)."""
    d = display()
    fig.update_layout(
        height=height or d.chart_px,
        font=dict(size=d.chart_font_px),
        title_font=dict(size=d.title_font_px),
        hoverlabel=dict(font_size=d.chart_font_px),
    )
    if legend_below:
        fig.update_layout(legend=dict(orientation="h", yanchor="top", y=-0.18, x=0))
    fig.update_traces(selector=dict(type="scatter"), line_width=d.line_px)
    return fig


def css() -> str:
    """The page style for the display mode: the base font size, and wider room for the main column."""
    d = display()
    return f"""<style>
html {{ font-size: {d.text_px}px; }}
[data-testid="stMainBlockContainer"] {{ padding: 2.5rem 1.5rem 3rem 1.5rem; max-width: 100%; }}
h1 {{ padding-top: 0.25rem; }}
</style>"""


def toggle() -> None:
    """The sidebar's projector-mode switch; it keeps ?projector=1 in the address so a link carries it."""

    def changed() -> None:
        if st.session_state[PROJECTOR_KEY]:
            st.query_params[PROJECTOR_PARAM] = "1"
        elif PROJECTOR_PARAM in st.query_params:
            del st.query_params[PROJECTOR_PARAM]

    projector_on()
    st.toggle(
        "Projector mode",
        key=PROJECTOR_KEY,
        on_change=changed,
        help="Larger text and charts, for a class watching a projected screen. A link with ?projector=1 opens "
        "in this mode.",
    )
