"""The artwork catalog: titles, artworks, image checks, visual features and the demo catalog."""
