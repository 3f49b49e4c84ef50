"""Write deploy/{docker,kubernetes}-gpu.json: Prefect's own base job templates for Docker and Kubernetes
work pools (as bundled with the installed Prefect) plus the GPU and shared-storage variables the
GPU deployments in prefect.yaml set.

    .venv/bin/python scripts/gpu_job_templates.py            # rewrite them (after a Prefect upgrade)
    prefect work-pool create driftsketch-docker --type docker --base-job-template deploy/docker-gpu.json
    prefect work-pool create driftsketch-kubernetes --type kubernetes --base-job-template deploy/kubernetes-gpu.json

Docker: ``container_create_kwargs`` is handed to docker-py's ``containers.create`` by the Docker worker
(prefect-docker); ``{"device_requests": [{"count": -1, "capabilities": [["gpu"]]}]}`` is ``docker run
--gpus all``. Kubernetes: ``gpu_limit`` becomes ``resources.limits["nvidia.com/gpu"]`` (the NVIDIA device
plugin's resource), ``node_selector`` picks GPU nodes, ``shared_claim`` / ``shared_mount`` mount one
ReadWriteMany volume (registry, preference store, runs, Label Studio files) at the same path in every job.
"""
from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "deploy"


def bundled_templates() -> dict[str, dict]:
    """Prefect's default base job templates for the docker and kubernetes worker types."""
    import prefect

    path = Path(prefect.__file__).parent / "server/api/collections_data/views/aggregate-worker-metadata.json"
    found = {}
    for workers in json.loads(path.read_text()).values():
        for name, meta in workers.items():
            if name in ("docker", "kubernetes"):
                found[name] = meta["default_base_job_configuration"]
    return found


def docker_gpu(base: dict) -> dict:
    t = copy.deepcopy(base)
    t["variables"]["properties"]["container_create_kwargs"] = {
        "title": "Container Create Kwargs",
        "description": "Extra keyword arguments of docker-py's containers.create, e.g. GPUs: "
                       '{"device_requests": [{"count": -1, "capabilities": [["gpu"]]}]}',
        "type": "object"}
    t["job_configuration"]["container_create_kwargs"] = "{{ container_create_kwargs }}"
    return t


def kubernetes_gpu(base: dict) -> dict:
    t = copy.deepcopy(base)
    props = t["variables"]["properties"]
    props["gpu_limit"] = {"title": "GPUs", "description": "nvidia.com/gpu limit of the job's container",
                          "type": "string", "default": "1"}
    props["node_selector"] = {"title": "Node selector", "description": "labels of the nodes to run on",
                              "type": "object", "default": {}}
    props["shared_claim"] = {"title": "Shared volume claim", "description": "a ReadWriteMany "
                             "PersistentVolumeClaim holding registry, preference store, runs and Label Studio files",
                             "type": "string", "default": "driftsketch-shared"}
    props["shared_mount"] = {"title": "Shared mount path", "description": "where the shared volume is mounted "
                             "(the same path in every job and on the Label Studio host)",
                             "type": "string", "default": "/srv/driftsketch"}
    pod = t["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]
    pod["nodeSelector"] = "{{ node_selector }}"
    pod["volumes"] = [{"name": "shared", "persistentVolumeClaim": {"claimName": "{{ shared_claim }}"}}]
    (container,) = pod["containers"]
    container["resources"]["limits"]["nvidia.com/gpu"] = "{{ gpu_limit }}"
    container["volumeMounts"] = [{"name": "shared", "mountPath": "{{ shared_mount }}"}]
    return t


def render() -> dict[str, str]:
    base = bundled_templates()
    return {"docker-gpu.json": json.dumps(docker_gpu(base["docker"]), indent=1) + "\n",
            "kubernetes-gpu.json": json.dumps(kubernetes_gpu(base["kubernetes"]), indent=1) + "\n"}


def main() -> int:
    OUT.mkdir(exist_ok=True)
    for name, text in render().items():
        (OUT / name).write_text(text)
        print(f"wrote {OUT / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
