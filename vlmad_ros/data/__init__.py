"""Driving data: the nuScenes converter, bags -> samples at keyframes, the torch dataset."""
