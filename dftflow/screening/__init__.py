"""Screening new ligands (issue 13).

SMILES -> every sensible placement (:mod:`.enumeration`) -> relaxation of each with a committee of
machine-learned potentials (:mod:`.committee`) -> a binding-mode label and anomaly flags for each
relaxed geometry (:mod:`.labels`) -> DFT on the best few per ligand -> a ranked table
(:mod:`.ranking`). The records every stage writes are in :mod:`.records`.
"""
