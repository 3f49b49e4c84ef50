"""Flow-DPO: tune a DriftSketch model toward what annotators prefer.

    from dpo import PreferenceStore, PreferenceRecord, PreferenceDataset, flow_dpo_loss
    store = PreferenceStore("data/preferences")
    ds = PreferenceDataset(store, class_names=model.class_names)
    loss, metrics = flow_dpo_loss(model, ref_model, x1_w, x1_l, class_labels)
"""
from dpo.records import PreferenceRecord
from dpo.store import PreferenceStore, StoreError

__all__ = ["PreferenceRecord", "PreferenceStore", "StoreError", "PreferenceDataset", "flow_dpo_loss"]


def __getattr__(name: str):
    # Lazy: the store and its schema must not pay for importing torch.
    if name == "flow_dpo_loss":
        from dpo.loss import flow_dpo_loss
        return flow_dpo_loss
    if name == "PreferenceDataset":
        from dpo.dataset import PreferenceDataset
        return PreferenceDataset
    raise AttributeError(name)
