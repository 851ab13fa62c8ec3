"""Stateless hot ops shared by the model families: attention, RoPE, embeddings, logit filters, KV cache.

Nothing here owns parameters, so no kernel can change a state-dict name.
"""
