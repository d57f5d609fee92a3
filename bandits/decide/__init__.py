"""The decision: a row of titles with their artworks, or one inline choice, with the exact probability
of what was shown. Imports the model and the leaves.
"""
