"""The MLIP stages of a ligand screen, as plain functions on ASE Atoms and records.

::

    enumerate (enumeration.enumerate_screen)
      -> relax_candidates: every placement loosely with the committee's first member, early stop
         for a desorbed/fragmented ligand; a label and anomalies for each (labels.label_geometry)
      -> select: duplicates merged; the ``n_refine`` lowest kept ones relaxed to the fine force
         limit by every member; E_ads per member, mean and sigma; the DFT escalations chosen

Every placement writes its record (``<key>.json``) and relaxed geometry (``<key>.extxyz``, ligand
atoms marked, fixed atoms kept) into the ligand's screen folder as soon as it is done: a second call
reuses every record whose inputs digest matches (resume after an interruption) and recomputes
nothing finished.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms

from dftflow.fileio import atomic_write_text
from dftflow.schemas import digest_of
from dftflow.screening import committee, labels
from dftflow.screening.enumeration import ScreenCandidate, build_candidate
from dftflow.screening.records import LigandScreen, PlacementRecord
from dftflow.structures.ligand_atoms import ligand_indices_of, mark_ligand
from dftflow.structures.ligands import LigandSpec

#: Two kept placements with the same binding mode and Pb sites whose loose energies differ by less
#: than this (eV) are one minimum reached twice (the later is marked ``duplicate_of``).
DUPLICATE_ENERGY_EV = 0.005
#: How often (optimizer steps) a relaxation checks whether its ligand desorbed or fragmented.
CHECK_EVERY_STEPS = 10


def _settings_digest(settings: Mapping[str, Any], keys: Sequence[str]) -> dict[str, Any]:
    return {k: settings[k] for k in keys}


_LOOSE_KEYS = ("committee", "optimizer", "fmax_loose_eV_per_A", "max_steps_loose")
_FINE_KEYS = ("committee", "optimizer", "fmax_fine_eV_per_A", "max_steps_fine")


def write_geometry(atoms: Atoms, path: Path) -> Path:
    """Write ``atoms`` (ligand atoms marked, fixed atoms kept) as extended XYZ, atomically."""
    import io

    from ase.io import write

    buf = io.StringIO()
    clean = atoms.copy()
    clean.calc = None
    write(buf, clean, format="extxyz")
    return atomic_write_text(path, buf.getvalue())


def read_geometry(path: Path) -> Atoms:
    """Read a geometry written by :func:`write_geometry` (ligand atoms and fixed atoms kept)."""
    from ase.io import read

    atoms = read(path, format="extxyz")
    indices = ligand_indices_of(atoms)
    return mark_ligand(atoms, indices or [])


def _load_record(path: Path, digest: str) -> PlacementRecord | None:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if data.get("inputs_digest") != digest:
        return None
    try:
        return PlacementRecord.model_validate(data["record"])
    except (KeyError, ValueError):
        return None


def _save_record(path: Path, digest: str, record: PlacementRecord) -> None:
    payload = {"inputs_digest": digest, "record": record.model_dump(mode="json")}
    atomic_write_text(path, json.dumps(payload, indent=1))


def _reused_or_computed(
    path: Path, digest: str, compute: Callable[[], PlacementRecord]
) -> PlacementRecord:
    """The record at ``path`` when its inputs digest matches, else ``compute()`` saved there."""
    rec = _load_record(path, digest)
    if rec is None:
        rec = compute()
        _save_record(path, digest, rec)
    return rec


def relax_candidates(
    slab: Atoms,
    spec: LigandSpec,
    candidates: Sequence[ScreenCandidate],
    settings: Mapping[str, Any],
    directory: Path,
    on_done: Callable[[PlacementRecord], None] | None = None,
) -> list[PlacementRecord]:
    """Loose relaxation, label and record of each candidate (reusing finished records).

    Parameters
    ----------
    slab
        The relaxed slab the ligand goes on, with its fixed atoms.
    spec
        The ligand.
    candidates
        Placements of the enumeration.
    settings
        A screen's settings (``ScreenSettings.model_dump()``).
    directory
        The ligand's screen folder (records and geometries).
    on_done
        Called with each record when it is finished (progress).
    """
    directory.mkdir(parents=True, exist_ok=True)
    model = settings["committee"][0]
    base = {
        "slab": _atoms_digest(slab),
        "ligand": spec.smiles,
        **_settings_digest(settings, _LOOSE_KEYS),
    }
    out: list[PlacementRecord] = []
    for cand in candidates:
        digest = digest_of({**base, "candidate": cand.model_dump(mode="json")})
        rec = _reused_or_computed(
            directory / f"{cand.key}.json",
            digest,
            lambda cand=cand: _relax_one(slab, spec, cand, settings, model, directory),
        )
        out.append(rec)
        if on_done is not None:
            on_done(rec)
    return out


def _relax(
    atoms: Atoms,
    model: str,
    settings: Mapping[str, Any],
    level: str,
    ligand: Sequence[int] | None,
) -> committee.RelaxOutcome:
    """One committee relaxation at ``level`` ("loose" or "fine") of the screen's settings.

    With ``ligand`` (a complex) it stops early when the ligand desorbs or fragments.
    """
    stop = None if ligand is None else (lambda a: labels.early_stop_reason(a, ligand))
    return committee.relax(
        atoms,
        model,
        fmax=float(settings[f"fmax_{level}_eV_per_A"]),
        max_steps=int(settings[f"max_steps_{level}"]),
        optimizer=str(settings["optimizer"]),
        stop=stop,
        check_every=CHECK_EVERY_STEPS,
    )


def _atoms_digest(atoms: Atoms) -> str:
    return digest_of(
        {
            "numbers": atoms.numbers.tolist(),
            "positions": np.round(atoms.positions, 4).tolist(),
            "cell": np.round(atoms.cell[:], 4).tolist(),
        }
    )


def _relax_one(
    slab: Atoms,
    spec: LigandSpec,
    cand: ScreenCandidate,
    settings: Mapping[str, Any],
    model: str,
    directory: Path,
) -> PlacementRecord:
    atoms = build_candidate(slab, spec, cand)
    lig = ligand_indices_of(atoms) or []
    start = atoms.copy()
    outcome = _relax(atoms, model, settings, "loose", lig)
    relaxed = mark_ligand(outcome.atoms, lig)
    label = labels.label_geometry(relaxed, lig, start, hit_step_cap=outcome.hit_step_cap)
    geo = write_geometry(relaxed, directory / f"{cand.key}.extxyz")
    p = cand.placement
    return PlacementRecord(
        key=cand.key,
        ligand=cand.ligand,
        mode_enumerated=p.mode,
        site=p.site,
        azimuth_deg=p.azimuth_deg,
        conformer=cand.conformer,
        form=cand.form,
        dissociate=p.dissociate,
        n_atoms=len(relaxed),
        n_steps_loose=outcome.n_steps,
        converged=outcome.converged,
        hit_step_cap=outcome.hit_step_cap,
        stopped_early=outcome.stopped_early,
        fmax_eV_per_A=outcome.fmax_eV_per_A,
        binding_mode=label.binding_mode,
        bound_pb=list(label.bound_pb),
        anomalies=list(label.anomalies),
        excluded=label.excluded or outcome.stopped_early is not None,
        reason=label.reason or outcome.stopped_early,
        e_loose_eV=outcome.energy_eV,
        structure_file=geo.name,
        cpu_s=outcome.cpu_s,
        wall_s=outcome.wall_s,
    )


def load_placement(directory: Path, key: str) -> PlacementRecord:
    """The finished loose record of placement ``key`` (written by :func:`relax_candidates`)."""
    data = json.loads((directory / f"{key}.json").read_text())
    return PlacementRecord.model_validate(data["record"])


def reference_ligand_energies(
    spec: LigandSpec, form: str, cell: Any, settings: Mapping[str, Any], directory: Path
) -> dict[str, float]:
    """Energy of the isolated reference ligand per committee member (eV), in the slab's cell.

    Each conformer the enumeration uses (up to ``max_conformers``) is relaxed by every member and
    the lowest energy per member is the reference, so that a placement's conformer is never
    compared with a higher gas-phase one.
    """
    from dftflow.structures.ligands import ligand_molecule, n_conformers
    from dftflow.structures.placement import molecule_in_cell

    best: dict[str, float] = {}
    for c in range(n_conformers(spec, form, int(settings["max_conformers"]))):
        atoms = molecule_in_cell(ligand_molecule(spec, form, conformer=c), cell)
        for model, e in relax_reference(atoms, settings, directory, f"conformer{c}").items():
            best[model] = min(e, best.get(model, e))
    return best


def mark_duplicates(records: Sequence[PlacementRecord]) -> list[PlacementRecord]:
    """Mark kept records that reached the same minimum as a lower one (``duplicate_of``).

    Same minimum: same binding mode, same bound Pb atoms, loose energies within
    :data:`DUPLICATE_ENERGY_EV`. The lowest of each group stays; the order is kept.
    """
    order = sorted(
        (r for r in records if not r.excluded and r.e_loose_eV is not None),
        key=lambda r: (r.e_loose_eV, r.key),
    )
    dup: dict[str, str] = {}
    firsts: list[PlacementRecord] = []
    for r in order:
        for f in firsts:
            if (
                f.binding_mode == r.binding_mode
                and sorted(f.bound_pb) == sorted(r.bound_pb)
                and abs(float(f.e_loose_eV) - float(r.e_loose_eV)) < DUPLICATE_ENERGY_EV  # type: ignore[arg-type]
            ):
                dup[r.key] = f.key
                break
        else:
            firsts.append(r)
    return [r.model_copy(update={"duplicate_of": dup.get(r.key)}) for r in records]


def relax_reference(
    atoms: Atoms, settings: Mapping[str, Any], directory: Path, name: str
) -> dict[str, float]:
    """Relax a reference system (slab, isolated ligand) with every committee member (fine).

    Returns member -> energy (eV); the record and each member's geometry are kept in
    ``directory`` and reused when the inputs are unchanged.
    """
    directory.mkdir(parents=True, exist_ok=True)
    digest = digest_of({"atoms": _atoms_digest(atoms), **_settings_digest(settings, _FINE_KEYS)})
    path = directory / f"{name}.json"
    if path.is_file():
        try:
            data = json.loads(path.read_text())
            if data.get("inputs_digest") == digest:
                return {k: float(v) for k, v in data["energies_eV"].items()}
        except (OSError, ValueError, KeyError):
            pass
    energies: dict[str, float] = {}
    steps: dict[str, int] = {}
    for model in settings["committee"]:
        out = _relax(atoms, model, settings, "fine", None)
        energies[model] = float(out.energy_eV)
        steps[model] = int(out.n_steps)
        write_geometry(out.atoms, directory / f"{name}.{_safe(model)}.extxyz")
    payload = {"inputs_digest": digest, "energies_eV": energies, "steps": steps}
    atomic_write_text(path, json.dumps(payload, indent=1))
    return energies


def _safe(model: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in model)


def refine(
    records: Sequence[PlacementRecord],
    settings: Mapping[str, Any],
    directory: Path,
    e_slab_eV: Mapping[str, float],
    e_ligand_eV: Mapping[str, float],
    on_done: Callable[[PlacementRecord], None] | None = None,
) -> list[PlacementRecord]:
    """Refine the ``n_refine`` lowest kept placements with every member; E_ads mean and sigma.

    The first member continues from its loose geometry; each further member starts from the
    first member's refined geometry. The label is redone on the refined geometry (a placement
    that desorbs or fragments on refinement is excluded then, with the reason).
    """
    committee_names = list(settings["committee"])
    kept = sorted(
        (r for r in records if not r.excluded and r.duplicate_of is None and r.e_loose_eV),
        key=lambda r: (r.e_loose_eV, r.key),
    )
    chosen = {r.key for r in kept[: int(settings["n_refine"])]}
    out: list[PlacementRecord] = []
    for rec in records:
        if rec.key not in chosen:
            out.append(rec)
            continue
        digest = digest_of(
            {
                "loose": rec.model_dump(mode="json", include={"key", "e_loose_eV"}),
                "refs": {"slab": dict(e_slab_eV), "ligand": dict(e_ligand_eV)},
                **_settings_digest(settings, _FINE_KEYS),
            }
        )
        done = _reused_or_computed(
            directory / f"{rec.key}.fine.json",
            digest,
            lambda rec=rec: _refine_one(
                rec, settings, directory, e_slab_eV, e_ligand_eV, committee_names
            ),
        )
        out.append(done)
        if on_done is not None:
            on_done(done)
    return out


def _refine_one(
    rec: PlacementRecord,
    settings: Mapping[str, Any],
    directory: Path,
    e_slab_eV: Mapping[str, float],
    e_ligand_eV: Mapping[str, float],
    names: Sequence[str],
) -> PlacementRecord:
    start = read_geometry(directory / str(rec.structure_file))
    lig = ligand_indices_of(start) or []
    energies: dict[str, float] = {}
    steps = 0
    cpu = wall = 0.0
    geometry = start
    capped = False
    for i, model in enumerate(names):
        out = _relax(geometry if i else start, model, settings, "fine", lig)
        energies[model] = float(out.energy_eV)
        cpu += out.cpu_s
        wall += out.wall_s
        capped = capped or out.hit_step_cap
        if i == 0:
            steps = out.n_steps
            geometry = mark_ligand(out.atoms, lig)
            if out.stopped_early:
                return rec.model_copy(
                    update={"excluded": True, "reason": f"on refinement: {out.stopped_early}"}
                )
    label = labels.label_geometry(geometry, lig, start, hit_step_cap=capped)
    fine_file = write_geometry(geometry, directory / f"{rec.key}.fine.extxyz")
    e_ads = {
        m: energies[m] - float(e_slab_eV[m]) - float(e_ligand_eV[m])
        for m in names
        if m in e_slab_eV and m in e_ligand_eV
    }
    mean, sigma = committee.committee_stats(e_ads)
    anomalies = sorted(set(rec.anomalies) | set(label.anomalies))
    return rec.model_copy(
        update={
            "n_steps_fine": steps,
            "refined": True,
            "hit_step_cap": rec.hit_step_cap or capped,
            "binding_mode": label.binding_mode,
            "bound_pb": list(label.bound_pb),
            "anomalies": anomalies,
            "excluded": label.excluded,
            "reason": label.reason,
            "e_complex_eV": energies,
            "e_ads_eV": e_ads,
            "e_ads_mean_eV": mean,
            "e_ads_sigma_eV": sigma,
            "structure_file": fine_file.name,
            "cpu_s": rec.cpu_s + cpu,
            "wall_s": rec.wall_s + wall,
        }
    )


def choose_escalations(
    screen: LigandScreen, top_k: int, sigma_escalate_eV: float, extra: int
) -> LigandScreen:
    """Mark the placements that go to DFT (``escalated`` with the reason).

    The ``top_k`` lowest committee means among kept, refined, distinct placements; then, up to
    ``extra`` more refined ones whose committee spread exceeds ``sigma_escalate_eV`` (lowest mean
    first): where the members disagree the ranking cannot be trusted without DFT.
    """
    ranked = [p for p in screen.kept() if p.refined]
    chosen: dict[str, str] = {}
    for p in ranked[:top_k]:
        chosen[p.key] = f"top-{top_k} by committee mean"
    n_extra = 0
    for p in ranked[top_k:]:
        if n_extra >= extra:
            break
        if p.e_ads_sigma_eV is not None and p.e_ads_sigma_eV > sigma_escalate_eV:
            chosen[p.key] = f"sigma {p.e_ads_sigma_eV:.2f} eV > {sigma_escalate_eV:g} eV"
            n_extra += 1
    rows = [
        p.model_copy(update={"escalated": p.key in chosen, "escalation_reason": chosen.get(p.key)})
        for p in screen.placements
    ]
    return screen.model_copy(update={"placements": rows})
