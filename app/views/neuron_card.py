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
    keys = [k for k in s if k != "clamp"]  # every registered section, in the card's order
    cols[1].caption(f"`{card.model}` · weights `{card.weights_hash}` · sections: "
                    + " · ".join(f"[{s[key].title}](#{key})" for key in keys) + " · [Clamp, verify, share](#share)")
    # the stored sections as one HTML block (one element for the browser to draw), each under its anchored heading
    st.html(f"<style>{STYLE}h2{{font-size:1.75rem;font-weight:600;padding:1rem 0 0.5rem}}</style>"
            + sections_block(card, keys))

    # the page's actions, one at a time: only the chosen one's form is drawn (each form drawn on every open cost
    # the browser about 0.15 s of the card's URL open)
    st.header("Clamp, verify and share", anchor="share")
    action = st.segmented_control("Act on this neuron", list(ACTIONS), key="card_action",
                                  help="each runs only when asked; the card above reads stored Results only")
    if action:
        ACTIONS[action](nid, card)
    st.caption("Sections without a stored Result say which command fills them; the card reads only stored Results.")


def verify_form(nid, card) -> None:
    """Verify a cheap patching score on the spot: activation patching of the neuron and its layer's top neurons."""
    runs = (card.sections["patching"].data or {}).get("runs", []) if "patching" in card.sections else []
    cheap = [r for r in runs if r["method"] != "activation"]
    if not cheap:
        st.info("No stored attribution or RelP run covers this neuron's layer: `interp patch` stores one.")
        return
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


def dose_form(nid, card) -> None:
    """Δ log p(target) and KL over a sweep of clamp values; the plot stays until another dose-response replaces it."""
    promoted = (card.sections["decoding"].data or {}).get("promoted") or [{"token": wb.default_token(" the")}]
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
    if f"dose-{nid}" in st.session_state:
        table, dose_target = st.session_state[f"dose-{nid}"]
        st.plotly_chart(dose_response_figure(table, dose_target), width="stretch", key="dose_fig")


def generate_form(nid, card) -> None:
    """Greedy generation before and with the neuron clamped."""
    asked = clamp_form("generate", "Generate with the clamp held")
    if asked:
        prompt, value, n_new = asked
        try:
            out = call("clamp_preview", prompt, (str(nid),), value, k=8, n_generate=int(n_new))
            continuation("Before", prompt, out["before"])
            continuation(f"Clamped to {value:g}", prompt, out["after"])
        except Exception as exc:
            show_error(exc)


def diff_form(nid, card) -> None:
    """The neurons that changed most between this model and another of the same architecture."""
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


def export_buttons(nid, card) -> None:
    """The card as one HTML file (with the dose-response, when one was run) or as Neuronpedia-style JSON."""
    dose = st.session_state.get(f"dose-{nid}")
    c1, c2 = st.columns(2)
    c1.download_button("Export HTML (one file, plots inline)",  # built when clicked, not on every page run
                       lambda: card_html(card, clamp=dose[0] if dose else None, clamp_target=dose[1] if dose else None),
                       file_name=f"neuron-{nid}-{card.model.replace('/', '_')}.html", mime="text/html")
    c2.download_button("Export JSON (Neuronpedia field names)", lambda: card.to_json(indent=1),
                       file_name=f"neuron-{nid}-{card.model.replace('/', '_')}.json", mime="application/json")


ACTIONS = {"Dose-response": dose_form, "Generate with a clamp": generate_form,
           "Verify a patching score": verify_form, "Diff against a model": diff_form, "Export": export_buttons}

card_page()
