"""Flow-DPO: tune a DriftSketch model toward what annotators prefer.

    from dpo import PreferenceStore, PreferenceRecord, PreferenceDataset, flow_dpo_loss
    store = PreferenceStore("data/preferences")
    ds = PreferenceDataset(store, class_names=model.class_names)
    loss, metrics = flow_dpo_loss(model, ref_model, x1_w, x1_l, class_labels)
"""
import driftsketch  # noqa: F401,E402  (first: sets OMP_WAIT_POLICY before anything loads torch)
from dpo.records import PreferenceRecord
from dpo.store import PreferenceStore, StoreError
from driftsketch.lazy import lazy_attributes

__all__ = ["PreferenceRecord", "PreferenceStore", "StoreError", "PreferenceDataset", "flow_dpo_loss"]


# Lazy: the store and its schema must not pay for importing torch.
__getattr__ = lazy_attributes({"flow_dpo_loss": "dpo.loss:flow_dpo_loss",
                               "PreferenceDataset": "dpo.dataset:PreferenceDataset"})
