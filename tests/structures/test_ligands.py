"""Ligand library, anchor detection in real molecules, forms and deterministic geometries."""

from __future__ import annotations

import numpy as np
import pytest

from dftflow.errors import InputError
from dftflow.structures import ligands as L


def test_library_has_the_papers_ligands_with_formulas_and_charges():
    lib = L.load_library()
    assert set(lib) == {"OA", "2-HA", "AcO"}
    assert (lib["OA"].formula, lib["OA"].charge, lib["OA"].anchor) == (
        "C18H34O2",
        0,
        "carboxylic_acid",
    )
    assert (lib["2-HA"].formula, lib["2-HA"].charge) == ("C16H32O2", 0)
    assert (lib["AcO"].formula, lib["AcO"].charge, lib["AcO"].anchor) == (
        "C2H3O2",
        -1,
        "carboxylate",
    )


@pytest.mark.parametrize(
    ("alias", "name"),
    [
        ("oleic acid", "OA"),
        ("OLEIC ACID", "OA"),
        ("oa", "OA"),
        ("2HA", "2-HA"),
        ("2-hexyldecanoic acid", "2-HA"),
        ("acetate", "AcO"),
        ("AcO-", "AcO"),
        ("AcO⁻", "AcO"),
        ("aco", "AcO"),
    ],
)
def test_aliases_case_insensitive(alias, name):
    assert L.get_ligand(alias).name == name


def test_unknown_ligand_is_one_line_input_error():
    with pytest.raises(InputError) as exc:
        L.get_ligand("oleylamine-x")
    assert "\n" not in str(exc.value) and "OA" in str(exc.value)


@pytest.mark.parametrize(
    ("smiles", "kind", "binding_symbols"),
    [
        ("CCCCCCCC/C=C\\CCCCCCCC(=O)O", "carboxylic_acid", ["O", "O"]),  # oleic acid
        ("CC(=O)O", "carboxylic_acid", ["O", "O"]),  # acetic acid
        ("CCCCCCCCCCCCCCCCC(=O)[O-]", "carboxylate", ["O", "O"]),  # stearate
        ("CCCCN", "amine", ["N"]),  # butylamine
        ("CCCCCCCC/C=C\\CCCCCCCCN", "amine", ["N"]),  # oleylamine
        ("CCCC[NH3+]", "ammonium", ["N"]),  # butylammonium
        ("CCCCCCCCP(=O)(O)O", "phosphonic_acid", ["O", "O"]),  # octylphosphonic acid
        ("CCCCCCCCCCCCCCP(=O)(O)O", "phosphonic_acid", ["O", "O"]),  # tetradecylphosphonic acid
        ("CCCCCCCCP(=O)([O-])O", "phosphonate", ["O", "O"]),
        ("CCCCCCCCCCCCS", "thiol", ["S"]),  # dodecanethiol
        ("CCCC[S-]", "thiolate", ["S"]),
    ],
)
def test_anchor_detection_in_real_molecules(smiles, kind, binding_symbols):
    from rdkit import Chem

    mol = Chem.MolFromSmiles(smiles)
    anchors = L.detect_anchors(smiles)
    assert [a.kind for a in anchors] == [kind]
    assert [mol.GetAtomWithIdx(i).GetSymbol() for i in anchors[0].binding_atoms] == binding_symbols
    spec = L.ligand_from_smiles(smiles, name="x")
    assert spec.anchor == kind


@pytest.mark.parametrize("smiles", ["CCCCCC", "CC(=O)N", "CCOCC", "c1ccccc1", "CC(=O)OC"])
def test_molecules_without_anchor_raise(smiles):
    # hexane, acetamide (amide N is not an amine), ether, benzene, ester
    assert L.detect_anchors(smiles) == []
    with pytest.raises(InputError, match="no anchor"):
        L.ligand_from_smiles(smiles)


def test_invalid_smiles_one_line_and_no_rdkit_noise(capfd):
    with pytest.raises(InputError, match="invalid SMILES"):
        L.ligand_from_smiles("C(C(")
    out, err = capfd.readouterr()
    assert err == "" and out == ""


@pytest.mark.parametrize(
    ("smiles", "form", "formula", "charge", "kind"),
    [
        ("CCCCN", "protonated", "C4H12N", 1, "ammonium"),
        ("CCCC[NH3+]", "deprotonated", "C4H11N", 0, "amine"),
        ("CCCCCCCCP(=O)(O)O", "deprotonated", "C8H18O3P", -1, "phosphonate"),
        ("CCCCCCCCP(=O)([O-])O", "protonated", "C8H19O3P", 0, "phosphonic_acid"),
        ("CCCCCCCCCCCCS", "deprotonated", "C12H25S", -1, "thiolate"),
        ("CC(=O)O", "radical", "C2H3O2", 0, "carboxylate"),
    ],
)
def test_forms_move_one_proton(smiles, form, formula, charge, kind):
    atoms = L.ligand_molecule(L.ligand_from_smiles(smiles, name="x"), form)
    assert atoms.get_chemical_formula("hill") == formula
    assert atoms.info["charge"] == charge
    assert atoms.info["anchor"] == kind


def test_acetate_forms_charge_is_metadata():
    aco = L.get_ligand("AcO")
    anion = L.ligand_molecule(aco)
    radical = L.ligand_molecule(aco, "radical")
    acid = L.ligand_molecule(aco, "protonated")
    assert anion.get_chemical_formula("hill") == radical.get_chemical_formula("hill") == "C2H3O2"
    assert np.allclose(anion.positions, radical.positions)
    assert (anion.info["charge"], anion.info["model"]) == (-1, "anion")
    assert (radical.info["charge"], radical.info["model"]) == (0, "radical")
    assert acid.get_chemical_formula("hill") == "C2H4O2" and acid.info["charge"] == 0
    # carboxylate C-O bonds are equal (resonance), the acid has C=O and C-OH
    sym = anion.get_chemical_symbols()
    c = [i for i, s in enumerate(sym) if s == "C" and anion.get_distance(i, sym.index("O")) < 1.5][
        0
    ]
    d = sorted(anion.get_distance(c, i) for i, s in enumerate(sym) if s == "O")
    assert d[1] - d[0] < 0.02 and 1.22 < d[0] < 1.32


def test_amine_has_no_radical_form():
    with pytest.raises(InputError, match="radical"):
        L.ligand_molecule(L.ligand_from_smiles("CCCCN"), "radical")


def test_long_acids_stand_along_z_and_are_reproducible():
    oa = L.get_ligand("OA")
    atoms = L.ligand_molecule(oa)
    assert atoms.get_chemical_formula("hill") == "C18H34O2"
    heavy = [i for i, s in enumerate(atoms.get_chemical_symbols()) if s != "H"]
    z = atoms.positions[heavy, 2]
    assert z.max() - z.min() > 15.0  # extended chain (18 C, ~2.5 A per 2 C)
    assert z.min() > -0.5  # nothing hangs below the anchor
    radius = np.linalg.norm(atoms.positions[:, :2], axis=1).max()
    assert radius < z.max() / 2  # standing, not lying
    # bonded geometry is sane: every heavy atom has a heavy neighbour at 1.2-1.6 A
    d = atoms.get_all_distances()[np.ix_(heavy, heavy)]
    assert np.all((np.sort(d, axis=1)[:, 1] > 1.2) & (np.sort(d, axis=1)[:, 1] < 1.6))
    # determinism: rebuild from scratch with the same seed
    first = atoms.positions.copy()
    L._geometry.cache_clear()
    again = L.ligand_molecule(oa)
    assert np.array_equal(first, again.positions)


def test_library_yaml_errors_are_input_errors(tmp_path):
    (tmp_path / "bad.yaml").write_text(
        "name: X\nsmiles: CCCC\ncharge: 0\nanchor: carboxylic_acid\n"
    )
    with pytest.raises(InputError, match="bad.yaml"):
        L.load_library(tmp_path)
