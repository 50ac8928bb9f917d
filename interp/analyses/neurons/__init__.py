"""Neuron-level analyses: DLA, LM-head decoding, clamping, the atlas."""
