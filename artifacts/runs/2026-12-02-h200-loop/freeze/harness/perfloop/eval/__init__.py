"""Accuracy gates: a shipped task set scored by loglikelihood, paired comparisons, logprob consistency."""
