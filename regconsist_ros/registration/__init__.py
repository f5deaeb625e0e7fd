"""Registration: geometry of view pairs (unproject/project/occlusion/overlap) and correspondences."""
