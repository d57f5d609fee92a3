"""The VW text format (features, blocks of action lines, labels and cost) and the workspace that reads
it: options allowed, the fast path. A leaf: imports nothing of Marquee's but the errors.
"""
