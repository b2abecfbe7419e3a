"""Perturbation ground truth: does a signature move when its cytokine is given? Per donor and cell type, treated
minus the same donor's control, the own signature's rank among the set, its effect and AUC."""

from cytoatlas._groundtruth.run import groundtruth

__all__ = ["groundtruth"]
