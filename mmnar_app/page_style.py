"""The Patient page's own CSS: the bar with the patient and Analyse stays on screen while scrolling (sticky
under Streamlit's header; the sticky box is the bar's layout wrapper, which Streamlit sizes to the bar) and
never covers a field the keyboard focuses, and on a phone (below 640 px) the bar stays one row, the page's
side margins shrink and nothing is wider than the screen. `table_style` (every page with tables): a table
scrolls inside itself and its cells wrap."""

from __future__ import annotations

import streamlit as st

_CSS = """
<style>
[data-testid='stLayoutWrapper']:has(> .st-key-patient_bar) {
  position: sticky; top: 3.75rem; z-index: 990;
}
.st-key-patient_bar {
  background: #ffffff; border-bottom: 1px solid #cbd5e1; padding: 0.25rem 0 0.25rem 0;
}
/* the status box's spinner turns in 8 steps a second instead of redrawing every frame: on a 2-core machine
   that also runs the model, a smooth spinner cost the browser ~0.1-0.2 s of CPU per analysis, taken from
   the attributions being computed (its progress bar and step line already say that work goes on) */
[data-testid='stExpanderIconSpinner'] { animation-timing-function: steps(8) !important; }
@media (prefers-reduced-motion: reduce) { [data-testid='stExpanderIconSpinner'] { animation: none !important; } }
/* what the keyboard focuses is scrolled into view below the sticky bar and Streamlit's header, not under
   them (WCAG 2.4.11, focus not obscured); a margin on the elements, not a padding on the scroller, which
   also moved where a click scrolls to */
[data-testid='stMain'] :is(input, textarea, button, a, [tabindex]) { scroll-margin-top: 12rem; }
@media (max-width: 640px) {
  [data-testid='stLayoutWrapper']:has(> .st-key-patient_bar) { top: 3.5rem; }
  /* the bar stays one row on a phone (the patient, then Analyse beside it) and its line of what is
     available is smaller, so it takes ~120 px of the screen instead of ~195 */
  .st-key-patient_bar [data-testid='stHorizontalBlock'] { flex-wrap: nowrap; gap: 0.5rem; }
  .st-key-patient_bar [data-testid='stColumn'] { min-width: 0; }
  .st-key-patient_bar [data-testid='stColumn']:last-child { flex: 0 0 auto; width: auto; }
  .st-key-patient_bar [data-testid='stCaptionContainer'] { font-size: 0.8rem; line-height: 1.3; }
  .js-plotly-plot, [data-testid='stDataFrame'], [data-testid='stImage'] img { max-width: 100%; }
}
</style>
"""


# every table's cells wrap (headers too: Streamlit keeps them on one line), so a table fits a phone's width; one
# that still cannot scrolls inside itself, never widening the page; narrower side margins on a phone
_TABLE_CSS = """<style>
[data-testid='stDataFrame'], [data-testid='stTable'] { max-width: 100%; overflow-x: auto; }
[data-testid='stTable'] td, [data-testid='stTable'] th { overflow-wrap: anywhere; white-space: normal; }
@media (max-width: 640px) {
  [data-testid='stMainBlockContainer'] { padding-left: 0.75rem; padding-right: 0.75rem; }
  [data-testid='stTabs'] [role='tablist'] { overflow-x: auto; }
}
</style>"""


def table_style() -> None:
    st.html(_TABLE_CSS)


def page_style() -> None:
    st.html(_CSS)
    table_style()


def fold_inputs(folded: bool) -> None:
    """Hide the form's fields (still rendered, so the browser keeps their values) behind its summary line."""
    if folded:
        st.html("<style>.st-key-patient_inputs_body { display: none; }</style>")
