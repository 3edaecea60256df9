"""Proposing phase boundaries from a word-timestamped transcript with an LLM (the seed's soft
supervision), for raters to verify before training.

The LLM is asked one short question per chunk of transcript (which phase does this passage
belong to?) and never asked for a time: times come from the words' own timestamps, and the
phase order (P1, then P2, then P3, any of them possibly absent) is imposed by a search over the
chunks' answers, so one confused answer cannot put a boundary out of order or outside the
recording.
"""
