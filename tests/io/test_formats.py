"""``zcalib.io.formats``: the registry of input formats and the functions that read a chunk of
each format into the common :class:`~zcalib.io.formats.Leptons` record.

Real ROOT files are written with uproot (``mktree`` + ``extend``), a few hand-picked events
each, so every number in the record can be checked: gain indices and ID bitmasks as pymin and
pyval read them, the NanoAOD pair formed from the two highest-pt electrons passing the ID.
"""

from __future__ import annotations

import math
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot

from zcalib.io.formats import (
    DEFAULT_TREES,
    FORMATS,
    ID_BITS,
    ColumnMap,
    event_branch,
    extract_leptons,
    get_format,
    optional_branches,
    required_branches,
)

FLAT_MAP = ColumnMap(
    pt=("pt1", "pt2"), eta=("eta1", "eta2"), phi=("phi1", "phi2"), run="run", weight="w"
)


def test_registry_names_trees_and_id_levels():
    assert list(FORMATS) == ["ecalelf", "nanoaod", "flat", "parquet"]
    assert DEFAULT_TREES == {
        "ecalelf": "selected",
        "nanoaod": "Events",
        "flat": "events",
        "parquet": "pairs",
    }
    assert get_format("ecalelf") is FORMATS["ecalelf"]
    assert get_format("ecalelf").id_levels == ("none", "medium", "tight")  # no loose bit
    assert get_format("nanoaod").id_levels == ("none", "loose", "medium", "tight")
    assert ID_BITS == {"none": 0, "loose": 1, "medium": 2, "tight": 4}


def test_unknown_format_lists_the_known_ones():
    with pytest.raises(ValueError, match="csv") as err:
        get_format("csv")
    assert str(err.value) == "unknown input format 'csv'; allowed: ecalelf, nanoaod, flat, parquet"


def test_branches_per_format():
    assert required_branches("ecalelf") == [
        "runNumber",
        "R9Ele",
        "etaEle",
        "phiEle",
        "energy_ECAL_ele",
        "gainSeedSC",
        "eleID",
    ]
    ecalelf = optional_branches("ecalelf")
    assert sorted(ecalelf) == ["charge", "event", "lumi", "npu", "sc_eta", "weight"]
    assert (ecalelf["sc_eta"], ecalelf["lumi"], ecalelf["weight"]) == (
        "etaSCEle",
        "lumiBlock",
        "mcGenWeight",
    )
    assert required_branches("nanoaod")[:3] == ["run", "luminosityBlock", "event"]
    assert optional_branches("nanoaod") == {"weight": "genWeight", "npu": "Pileup_nTrueInt"}
    assert required_branches("flat", FLAT_MAP) == [
        "pt1",
        "pt2",
        "eta1",
        "eta2",
        "phi1",
        "phi2",
        "run",
    ]
    assert optional_branches("flat", FLAT_MAP) == {"weight": "w"}
    with pytest.raises(ValueError, match=r"^the 'flat' format needs a column_map$"):
        required_branches("flat")


def test_event_branches():
    assert event_branch("ecalelf", "run", {}) == "runNumber"
    assert event_branch("ecalelf", "event", {}) is None  # ECALELF lists without eventNumber
    assert event_branch("ecalelf", "event", {"event": "eventNumber"}) == "eventNumber"
    assert event_branch("nanoaod", "event", {}) == "event"  # always there
    assert event_branch("flat", "run", {}, FLAT_MAP) == "run"
    assert event_branch("flat", "lumi", {}, FLAT_MAP) is None  # the map names none
    assert event_branch("parquet", "lumi", {"lumi": "lumi"}) == "lumi"


def _f3(rows, dtype=np.float32):
    return np.array(rows, dtype)


def _write(path: Path, tree: str, branches: dict) -> Path:
    types = {
        k: (np.dtype((v.dtype, v.shape[1:])) if isinstance(v, np.ndarray) and v.ndim == 2 else
            (v.type.content if isinstance(v, ak.Array) else v.dtype))
        for k, v in branches.items()
    }  # fmt: skip
    with uproot.recreate(path) as f:
        f.mktree(tree, types)
        f[tree].extend(branches)
    return path


@pytest.fixture(scope="module")
def ecalelf_file(tmp_path_factory):
    """Three events; the third slot of every ``[3]`` array is junk that must not be read."""
    return _write(
        tmp_path_factory.mktemp("formats") / "ecalelf.root",
        "selected",
        {
            "runNumber": np.array([355100, 355101, 355102], np.uint32),
            "lumiBlock": np.array([7, 8, 9], np.uint32),
            "etaEle": _f3([[0.1, -0.2, 9], [1.0, 2.0, 9], [-1.7, 0.5, 9]]),
            "etaSCEle": _f3([[0.125, -0.25, 9], [1.0, 2.125, 9], [-1.75, 0.5, 9]]),
            "phiEle": _f3([[0, 3, 0], [1, -2, 0], [2, -1, 0]]),
            "R9Ele": _f3(
                [[0.9375, 0.875, 0], [0.75, 0.96875, 0], [0.5, 0.984375, 0]]
            ),  # exact in float32
            "energy_ECAL_ele": _f3([[45, 46, 1], [70, 160, 1], [130, 50, 1]]),
            # gain index 0/1/2 = gain 12/6/1; 3 is no gain
            "gainSeedSC": _f3([[0, 1, 0], [2, 0, 0], [1, 3, 0]], np.uint8),
            # bitmask: medium 0x08, tight 0x10
            "eleID": _f3([[0x18, 0x08, 0], [0x10, 0x00, 0], [0x08, 0x18, 0]], np.uint32),
            "chargeEle": _f3([[1, -1, 0], [-1, 1, 0], [1, 1, 0]], np.int32),
        },
    )


def _ecalelf_chunk(path):
    form = get_format("ecalelf")
    available = {
        r: b
        for r, b in optional_branches("ecalelf").items()
        if b in form.branch_names(str(path), "selected")
    }
    columns = [*required_branches("ecalelf"), *available.values()]
    meta = {"filename": str(path), "treename": "selected", "entrystart": 0, "entrystop": 3}
    return form.read_chunk(meta, columns), available


def test_ecalelf_leptons(ecalelf_file):
    chunk, available = _ecalelf_chunk(ecalelf_file)
    assert available == {"sc_eta": "etaSCEle", "charge": "chargeEle", "lumi": "lumiBlock"}
    lep = extract_leptons(chunk, "ecalelf", id_level="medium", available=available)
    assert len(lep) == 3
    assert lep.energy.tolist() == [[45, 46], [70, 160], [130, 50]]
    assert lep.sc_eta.tolist() == [[0.125, -0.25], [1.0, 2.125], [-1.75, 0.5]]
    assert lep.r9.tolist() == [[0.9375, 0.875], [0.75, 0.96875], [0.5, 0.984375]]
    assert lep.gain.tolist() == [[12, 6], [1, 12], [6, -1]]
    assert lep.charge.tolist() == [[1, -1], [-1, 1], [1, 1]]
    assert lep.id_pass.tolist() == [[True, True], [False, False], [True, True]]
    assert lep.id_bits.tolist() == [[6, 2], [4, 0], [2, 6]]  # medium 2 | tight 4
    assert (lep.run.tolist(), lep.lumi.tolist()) == ([355100, 355101, 355102], [7, 8, 9])
    assert lep.event.tolist() == [0, 0, 0]  # no eventNumber branch: 0
    assert lep.weight.tolist() == [1.0, 1.0, 1.0]  # no mcGenWeight
    assert lep.valid.all()
    # Et from the supercluster eta
    assert lep.et[1, 1] == pytest.approx(160 / math.cosh(2.125))
    tight = extract_leptons(chunk, "ecalelf", id_level="tight", available=available)
    assert tight.id_pass.tolist() == [[True, False], [True, False], [False, True]]
    none = extract_leptons(chunk, "ecalelf", id_level="none", available=available)
    assert none.id_pass.all()


def test_ecalelf_without_supercluster_eta_uses_the_track_eta(ecalelf_file):
    chunk, _ = _ecalelf_chunk(ecalelf_file)
    lep = extract_leptons(chunk, "ecalelf", id_level="none", available={"lumi": "lumiBlock"})
    assert lep.sc_eta.tolist() == lep.eta.tolist()
    assert lep.charge.tolist() == [[0, 0]] * 3


@pytest.fixture(scope="module")
def nanoaod_file(tmp_path_factory):
    """Three events: the leading electron of the first fails the medium ID (cutBased 1), the
    second has two electrons, the third one."""
    electrons = ak.zip(
        {
            "pt": ak.Array([[50.0, 40.0, 30.0], [45.0, 20.0], [60.0]]),
            "eta": ak.Array([[0.1, -0.5, 1.0], [1.2, -1.9], [0.3]]),
            "deltaEtaSC": ak.Array([[0.01, -0.02, 0.0], [0.03, 0.0], [0.0]]),
            "phi": ak.Array([[0.0, 3.0, 1.0], [1.0, -2.0], [2.0]]),
            "mass": ak.Array([[0.0, 0.0, 0.0], [0.0, 0.0], [0.0]]),
            "r9": ak.Array([[0.95, 0.9, 0.8], [0.97, 0.6], [0.9]]),
            "seedGain": ak.values_astype(ak.Array([[12, 6, 1], [12, 1], [12]]), np.uint8),
            "cutBased": ak.values_astype(ak.Array([[1, 4, 3], [4, 3], [4]]), np.uint8),
            "charge": ak.values_astype(ak.Array([[1, -1, 1], [-1, 1], [1]]), np.int32),
        }
    )
    return _write(
        tmp_path_factory.mktemp("formats") / "nano.root",
        "Events",
        {
            "run": np.array([1, 2, 3], np.uint32),
            "luminosityBlock": np.array([4, 5, 6], np.uint32),
            "event": np.array([7, 8, 9], np.uint64),
            "Electron": electrons,
        },
    )


def test_nanoaod_pair_is_the_two_leading_electrons_passing_the_id(nanoaod_file):
    import warnings

    from coffea.nanoevents import NanoEventsFactory

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # coffea's schema notes about the minimal file
        events = NanoEventsFactory.from_root(
            {str(nanoaod_file): "Events"}, schemaclass=get_format("nanoaod").schema(), mode="eager"
        ).events()
    lep = extract_leptons(events, "nanoaod", id_level="medium", available={})
    # event 0: electron 0 (cutBased 1) fails; electrons 1 and 2 form the pair
    assert lep.energy[0].tolist() == pytest.approx([40 * math.cosh(-0.5), 30 * math.cosh(1.0)])
    assert lep.sc_eta[0].tolist() == pytest.approx([-0.52, 1.0])
    assert lep.gain[0].tolist() == [6, 1]  # seedGain is stored as 12/6/1
    assert lep.charge[0].tolist() == [-1, 1]
    assert lep.id_bits.tolist() == [[7, 3], [7, 3], [7, 0]]  # cutBased 4: all, 3: loose+medium
    # event 2 has one electron: the second slot is empty
    assert lep.valid.tolist() == [[True, True], [True, True], [True, False]]
    assert lep.has_pair.tolist() == [True, True, False]
    assert (lep.run.tolist(), lep.lumi.tolist(), lep.event.tolist()) == (
        [1, 2, 3],
        [4, 5, 6],
        [7, 8, 9],
    )
    loose = extract_leptons(events, "nanoaod", id_level="none", available={})
    assert loose.energy[0].tolist() == pytest.approx([50 * math.cosh(0.1), 40 * math.cosh(-0.5)])
    tight = extract_leptons(events, "nanoaod", id_level="tight", available={})
    assert tight.valid.tolist() == [[True, False]] * 3  # one tight electron per event


class _TreeProbe:
    """A coffea processor reading, per chunk, a branch through the tree :func:`coffea_tree`
    gives (module level: coffea pickles processors)."""

    def __init__(self, fallback: bool) -> None:
        self.fallback = fallback

    def process(self, events):
        from zcalib.io._base import coffea_tree

        if self.fallback:  # a coffea whose mapping keeps no tree: the file handle is used
            events.attrs["@events_factory"]._mapping._cache.clear()
        tree = coffea_tree(events)
        chunk = get_format("ecalelf").read_chunk(events.metadata, ["energy_ECAL_ele"], tree)
        return {events.metadata["entrystart"]: (type(tree).__name__, chunk["energy_ECAL_ele"])}

    def postprocess(self, accumulator):
        return accumulator


@pytest.mark.parametrize("fallback", [False, True])
def test_tree_header_read_once_per_file_not_per_chunk(ecalelf_file, monkeypatch, fallback):
    """coffea reads every chunk's tree header (all branches' metadata) again; with the
    shared tree cache (:mod:`zcalib.io._trees`) the processor reads a file's chunks through
    one tree kept open, which coffea then finds: one header read for the entry count, two
    for the first chunk (coffea's and the kept one) and none for the other two, also when
    coffea keeps no tree for the processor. The values are those of a direct read."""
    from coffea import processor
    from coffea.nanoevents import BaseSchema
    from uproot.models.TTree import Model_TTree_v20

    from zcalib.io._trees import OPEN_TREES, uproot_options

    reads = []
    read_members = Model_TTree_v20.read_members

    def counted(self, *args, **kwargs):
        reads.append(1)
        return read_members(self, *args, **kwargs)

    monkeypatch.setattr(Model_TTree_v20, "read_members", counted)
    processor.ProcessorABC.register(_TreeProbe)
    runner = processor.Runner(
        executor=processor.IterativeExecutor(),
        schema=BaseSchema,
        chunksize=1,
        savemetrics=False,
        metadata_cache={},  # the entry count is read in every test
    )
    OPEN_TREES.clear()
    out = runner(
        {"d": [str(ecalelf_file)]},
        _TreeProbe(fallback),
        treename="selected",
        uproot_options=uproot_options(),
    )
    # without the cache 4 (entry count, one per chunk); before coffea's tree was used, 7
    assert len(reads) == (4 if fallback else 3)
    monkeypatch.undo()
    with uproot.open(ecalelf_file) as fh:
        direct = fh["selected"]["energy_ECAL_ele"].array(library="np")
    assert sorted(out) == [0, 1, 2]
    assert {name for name, _ in out.values()} == {"Model_TTree_v20"}
    np.testing.assert_array_equal(np.concatenate([out[i][1] for i in range(3)]), direct)
