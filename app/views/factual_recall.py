"""Factual recall: how the model gets from "The capital of France is" to " Paris"."""

from __future__ import annotations

import streamlit as st
from components import choose_run, job_panel, neuron_link, start_job
from state import call, show_error, workbench

from interp.viz.factual import dla_by_layer, name_mover_scatter, suppression_hist, top_neurons_bar

st.title("Factual recall")
st.caption("Interpreting Key Mechanisms of Factual Recall in Transformer-Based Language Models (Lv et al., 2024) · "
           "direct logit attribution, argument-passing heads, the MLP as an activation, final-layer suppression.")
wb = workbench()

with st.expander("Run on a facts set", expanded=False):
    with st.form("factual"):
        facts = st.text_input("Facts", "builtin:capitals",
                              help="builtin:capitals|languages|city_country|makers, or a JSONL path")
        if st.form_submit_button("Decompose"):
            start_job("factual-job", "factual_recall", facts=facts)
    job_panel("factual-job")

st.subheader("One fact")
c = st.columns([3, 1, 1])
prompt = c[0].text_input("Prompt", "The capital of France is")
subject = c[1].text_input("Subject", "France")
answer = c[2].text_input("Answer", " Paris", help="with its leading space; several tokens: the first is scored")
try:
    one = call("decompose_fact", prompt, subject, answer)
    row = one.table("facts").iloc[0]
    verdict = "correct" if row.correct else f"wrong: the model predicts {row.predicted!r}"
    st.markdown(f"P({row.answer_token!r}) = **{row.p_answer:.3f}**, rank {row['rank']} ({verdict})")
    cols = st.columns(2)
    cols[0].plotly_chart(dla_by_layer(one, fact=0), width="stretch", key="one-dla")
    heads = one.table("heads").sort_values("attn_to_subject", ascending=False).head(8)
    cols[1].markdown("**Heads attending to the subject** (from the last position)")
    cols[1].dataframe(heads[["layer", "head", "attn_to_subject", "subject_dla", "answer_dla"]], hide_index=True)
    supp = one.table("suppression").iloc[0]
    st.markdown(f"Final layer: MLP {supp.last_mlp_dla_rel:+.2f}, attention {supp.last_attn_dla_rel:+.2f} on "
                f"answer − mean logit; without the final MLP P(answer) = {supp.p_without_last_mlp:.3f}")
    top = one.table("neurons").head(8)
    st.markdown(f"**Top neurons of MLP {one.metrics['mlp_layer']}** for this fact: " + ", ".join(
        f"{neuron_link(int(t.layer), int(t.neuron))} ({t.mean_dla:+.2f})" for t in top.itertuples()))
except Exception as exc:
    show_error(exc)

st.subheader("Over a facts set")
result = choose_run("factual_recall", "Figures")
if result is None:
    st.info("No factual-recall run of this model yet: run one above, or `interp factual --facts builtin:capitals`.")
    st.stop()
m = result.metrics
st.caption(f"{result.config.facts}: {m['n_correct']} of {m['n_facts']} facts answered correctly at top-1; "
           f"{m['n_decomposed']} decomposed ({result.run_id})")
for note in result.notes:
    st.info(note)
cols = st.columns(2)
cols[0].plotly_chart(dla_by_layer(result), width="stretch", key="set-dla")
cols[1].plotly_chart(name_mover_scatter(result), width="stretch", key="set-heads")
cols = st.columns(2)
cols[0].plotly_chart(top_neurons_bar(result), width="stretch", key="set-neurons")
cols[1].plotly_chart(suppression_hist(result), width="stretch", key="set-supp")
st.markdown(f"**The MLP of layer {m['activation_layer']} as an activation** (per-prompt least squares on the top "
            f"heads; mean R² {m['mean_regression_r2']:.3f}). β > 0: amplifies the head, β < 0: erases it.")
st.dataframe(result.table("betas"), hide_index=True)
top = result.table("neurons").head(10)
st.markdown("Top neurons: " + ", ".join(f"{neuron_link(int(t.layer), int(t.neuron))} ({t.mean_dla:+.2f})"
                                        for t in top.itertuples()))
with st.expander("Facts"):
    st.dataframe(result.table("facts")[["prompt", "answer", "answer_token", "predicted", "correct", "p_answer",
                                        "multi_token"]], hide_index=True)
st.subheader("Mitigating final-layer suppression")
fix = choose_run("factual_fix", "This")
if fix is None:
    st.info("No suppression-fix run of this model yet: `interp factual-fix`.")
else:
    st.markdown(fix.notes[0])
    f = fix.metrics
    st.markdown(f"Held-out accuracy {f['held_out_acc_before']:.2f} → {f['held_out_acc_after']:.2f}; "
                f"{f['held_out_share_improved']:.0%} of held-out facts gained probability.")
