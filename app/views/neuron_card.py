"""Neuron card: everything the stored analyses say about one neuron, with checks on the spot.

URL: ``/neuron?model=smollm2-135m&neuron=29.808``. Every section reads stored Results (cached);
the verify, dose-response, generation and diff actions run only when asked."""

from __future__ import annotations

import streamlit as st
from components import card_url, clamp_form, continuation, neuron_input
from state import call, show_error, workbench

from interp.viz.card import STYLE, card_html, dose_response_figure, sections_block, verify_scatter

wb = workbench()
st.title("Neuron card")


@st.fragment
def card_page() -> None:
    """The card and its actions as one fragment: switching neuron in the box reruns only this (not the
    navigation and the sidebar), so an open card switches faster."""
    if "card_neuron" not in st.session_state:
        st.session_state.card_neuron = st.query_params.get("neuron", "")
        if not st.session_state.card_neuron:  # the neuron most specific to a default token
            try:
                top = call("neurons_for", wb.default_token(" Paris"), k=1).iloc[0]
                st.session_state.card_neuron = f"{int(top.layer)}.{int(top.neuron)}"
            except Exception:
                st.session_state.card_neuron = f"{wb.info()['n_layers'] - 1}.0"

    cols = st.columns([2, 3])
    nid = neuron_input("card_neuron", cols[0], help="e.g. 29.808; the URL's ?neuron= opens a card directly")
    try:
        card = call("card", str(nid), stamp=wb.store_stamp())  # a newly stored Result shows at once
    except Exception as exc:
        show_error(exc)
        st.stop()
    s = card.sections
    cols[1].caption(f"`{card.model}` · weights `{card.weights_hash}` · sections: "
                    + " · ".join(f"[{sec.title}](#{key})" for key, sec in s.items()))


    def sections(keys: list[str]) -> None:
        """Sections with their headings (anchored by key) and stored content, drawn as one HTML block (one element
        for the browser to draw, not two per section)."""
        if keys:
            st.html(f"<style>{STYLE}h2{{font-size:1.75rem;font-weight:600;padding:1rem 0 0.5rem}}</style>"
                    + sections_block(card, keys))


    def verify_form() -> None:
        """Verify a cheap patching score on the spot (drawn under the Patching section)."""
        runs = (s["patching"].data or {}).get("runs", [])
        cheap = [r for r in runs if r["method"] != "activation"]
        if cheap:
            with st.form("verify"):
                labels = [f"{r['method']} · {r['dataset']} · n={r['n_pairs']}" for r in cheap]
                c1, c2 = st.columns([3, 2])
                pick = c1.selectbox("Verify a cheap score against activation patching", labels)
                k = c2.number_input("…and the layer's top neurons by that score", 1, 10, 5)
                go_verify = st.form_submit_button("Verify")
            if go_verify:
                run = cheap[labels.index(pick)]
                try:
                    with st.spinner("Activation patching these neurons (one forward pass per batch of rows)…"):
                        out = wb.verify_patching(str(nid), run["path"], k=int(k))
                    c1, c2 = st.columns([3, 2])
                    c1.plotly_chart(verify_scatter(out), width="stretch", key="verify_fig")
                    r, rho = out["pearson"], out["spearman"]
                    c2.metric(f"{nid}: activation patching", f"{out['neuron']['activation']:+.4f}",
                              f"{out['method']} predicted {out['neuron']['predicted']:+.4f}", delta_color="off")
                    c2.markdown(f"Over {len(out['table'])} neurons: Pearson {r if r is None else f'{r:.3f}'}, "
                                f"Spearman {rho if rho is None else f'{rho:.3f}'}, signs agree "
                                f"{out['sign_agreement']:.0%}; stored as `{out['result'].run_id}`.")
                    c2.dataframe(out["table"], hide_index=True)
                except Exception as exc:
                    show_error(exc)


    keys = [k for k in card.sections if k != "clamp"]  # every registered section, in the card's order
    cut = keys.index("patching") + 1 if "patching" in keys else len(keys)
    sections(keys[:cut])
    if "patching" in keys:
        verify_form()  # the page's action, under the Patching section
    sections(keys[cut:])

    # --- clamp -------------------------------------------------------------------------------------
    if "clamp" in s:
        st.header(s["clamp"].title, anchor="clamp")
    promoted = (s["decoding"].data or {}).get("promoted") or [{"token": wb.default_token(" the")}]
    with st.form("dose"):
        c1, c2 = st.columns(2)
        target = c1.text_input("Target token", value=promoted[0]["token"])
        values_text = c2.text_input("Clamp values (comma-separated; empty: ±4× its peak, 9 values)", value="")
        go_dose = st.form_submit_button("Run the dose-response")
    if go_dose:
        try:
            values = None
            if values_text.strip():
                try:
                    values = tuple(float(v) for v in values_text.split(","))
                except ValueError:
                    raise ValueError(f"clamp values must be numbers, got {values_text!r}") from None
            st.session_state[f"dose-{nid}"] = (call("dose_response", str(nid), target, values), target)
        except ValueError as exc:
            st.error(str(exc))
        except Exception as exc:
            show_error(exc)
    if f"dose-{nid}" in st.session_state:  # drawn on every rerun until another dose-response replaces it
        table, dose_target = st.session_state[f"dose-{nid}"]
        st.plotly_chart(dose_response_figure(table, dose_target), width="stretch", key="dose_fig")
    asked = clamp_form("generate", "Generate with the clamp held")
    if asked:
        prompt, value, n_new = asked
        try:
            out = call("clamp_preview", prompt, (str(nid),), value, k=8, n_generate=int(n_new))
            continuation("Before", prompt, out["before"])
            continuation(f"Clamped to {value:g}", prompt, out["after"])
        except Exception as exc:
            show_error(exc)

    # --- diff and share ----------------------------------------------------------------------------
    st.header("Compare and share", anchor="share")
    with st.form("diff"):
        other = st.text_input("Diff this model against (a spec of the same architecture: an unlearning edit's "
                              "directory, a .gguf, a hub id)", value="")
        go_diff = st.form_submit_button("Diff")
    if go_diff and other.strip():
        try:
            with st.spinner(f"Loading {other} and comparing every neuron…"):
                diff = wb.diff(other.strip(), k=0)
            mine = diff[(diff.layer == nid.layer) & (diff.neuron == nid.index)]
            if len(mine):
                st.markdown(f"**{nid}** changed by " + ", ".join(f"{c}={mine.iloc[0][c]:.2%}" for c in mine.columns
                                                                    if c.startswith("d_")))
            top = diff.head(20).copy()
            top.insert(0, "card", [card_url(l, n) for l, n in zip(top.layer, top.neuron)])
            st.markdown("Neurons that changed most (open a card from the link):")
            st.dataframe(top, hide_index=True, column_config={
                "card": st.column_config.LinkColumn("card", display_text=r"neuron=([0-9.]+)")})
        except Exception as exc:
            show_error(exc)
    dose = st.session_state.get(f"dose-{nid}")
    c1, c2 = st.columns(2)
    c1.download_button("Export HTML (one file, plots inline)",  # built when clicked, not on every page run
                       lambda: card_html(card, clamp=dose[0] if dose else None, clamp_target=dose[1] if dose else None),
                       file_name=f"neuron-{nid}-{card.model.replace('/', '_')}.html", mime="text/html")
    c2.download_button("Export JSON (Neuronpedia field names)", lambda: card.to_json(indent=1),
                       file_name=f"neuron-{nid}-{card.model.replace('/', '_')}.json", mime="application/json")
    st.caption("Sections without a stored Result say which command fills them; the card reads only stored Results.")


card_page()
