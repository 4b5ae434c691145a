"""The item in a photo: its cut-out from a white background, its boxes, its colour; composites made from the catalog."""
