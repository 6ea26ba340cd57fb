"""Backbones: timm models split into features and a classifier head; fixed simplex-ETF heads; per-layer features."""
