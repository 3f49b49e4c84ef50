"""The two Label Studio projects (pairwise and rating) and their idempotent setup.

Pairwise: two rendered sketches of one class side by side, "Which is the better <class>?", choices
A / B / tie (hotkeys 1 / 2 / 3; ``<Pairwise>`` has no tie) and an optional "both are bad" checkbox
(hotkey 4). Which stored sample is shown on the left is randomised per task and recorded in the task
data (``left``), so position bias can be measured and undone.

Rating: one sketch with a 1-5 ``<Rating>`` bound to that one image (Label Studio drops ratings bound to
two images from its exports).

Tag names are read back from the label config (:func:`control_names`) rather than repeated elsewhere.

    ids = setup_projects(ls, cfg.projects)   # {"pairwise": 3, "rating": 4}; safe to run twice
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Literal

from label_studio_sdk import LabelStudio

from driftsketch.errors import DriftSketchError
from labeling.client import client_url, with_retries
from labeling.config import ProjectsConfig

Kind = Literal["pairwise", "rating"]
CHOICE_TO_SIDE = {"A": "left", "B": "right", "tie": "tie"}  # pairwise choice value -> screen side
BOTH_BAD = "both are bad"


class ProjectError(DriftSketchError, RuntimeError):
    """A project exists under our title but does not match what we expect."""


def pairwise_config(image_width: str = "320px") -> str:
    """Label config of the pairwise project (A left, B right, tie, both-bad flag)."""
    img = f'width="{image_width}" maxWidth="{image_width}"'
    return f"""<View>
  <Header value="Which is the better $class_name?"/>
  <View style="display: flex; gap: 24px;">
    <View style="text-align: center;">
      <Header value="A" size="4"/>
      <Image name="image_left" value="$image_left" {img} zoom="false"/>
    </View>
    <View style="text-align: center;">
      <Header value="B" size="4"/>
      <Image name="image_right" value="$image_right" {img} zoom="false"/>
    </View>
  </View>
  <Choices name="preference" toName="image_left" choice="single-radio" required="true" showInline="true">
    <Choice value="A" hotkey="1"/>
    <Choice value="B" hotkey="2"/>
    <Choice value="tie" hotkey="3"/>
  </Choices>
  <Choices name="flags" toName="image_left" choice="multiple" showInline="true">
    <Choice value="{BOTH_BAD}" hotkey="4"/>
  </Choices>
</View>"""


def rating_config(image_width: str = "320px") -> str:
    """Label config of the rating project (one image, 1-5 stars bound to it)."""
    return f"""<View>
  <Header value="How good is this $class_name? (1 = unrecognisable or messy, 5 = clean and clear)"/>
  <Image name="image" value="$image" width="{image_width}" maxWidth="{image_width}" zoom="false"/>
  <Rating name="rating" toName="image" maxRating="5" required="true"/>
</View>"""


def label_config(kind: Kind, cfg: ProjectsConfig) -> str:
    return pairwise_config(cfg.image_width) if kind == "pairwise" else rating_config(cfg.image_width)


def project_title(kind: Kind, cfg: ProjectsConfig) -> str:
    return cfg.pairwise_title if kind == "pairwise" else cfg.rating_title


def control_names(config_xml: str) -> dict[str, str]:
    """Control tag names by role, read from a label config: ``{"preference", "flags"}`` or ``{"rating"}``."""
    try:
        root = ET.fromstring(config_xml)
    except (ET.ParseError, TypeError, ValueError) as exc:
        raise ProjectError(f"label config is not XML ({' '.join(str(exc).split())[:100]})") from None
    out: dict[str, str] = {}
    for el in root.iter("Choices"):
        values = {c.get("value") for c in el.iter("Choice")}
        if {"A", "B", "tie"} <= values:
            out["preference"] = el.get("name")
        elif BOTH_BAD in values:
            out["flags"] = el.get("name")
    for el in root.iter("Rating"):
        out["rating"] = el.get("name")
    return out


def project_kind(config_xml: str) -> Kind:
    """``"pairwise"`` or ``"rating"`` from a project's label config."""
    names = control_names(config_xml)
    if "preference" in names:
        return "pairwise"
    if "rating" in names:
        return "rating"
    raise ProjectError("label config has neither A/B/tie choices nor a rating: not a DriftSketch project")


def _normalise(xml: str) -> str:
    return ET.tostring(ET.fromstring(xml), encoding="unicode").replace("\n", "").replace(" ", "")


def find_project(ls: LabelStudio, title: str) -> int | None:
    """Id of the project titled exactly ``title`` (None if absent); several with that title is an error."""
    url = client_url(ls)
    found = with_retries(lambda: [p.id for p in ls.projects.list(title=title, page_size=100) if p.title == title], url)
    if len(found) > 1:
        raise ProjectError(f"{url}: {len(found)} projects are titled {title!r} (ids {found}); keep one")
    return found[0] if found else None


def ensure_project(ls: LabelStudio, title: str, config_xml: str, annotators_per_task: int = 1,
                   enforce_overlap: bool = False) -> int:
    """Create the project ``title`` with ``config_xml`` (``annotators_per_task`` answers per task), or return
    the existing one after checking that its label config matches (a different config raises
    :class:`ProjectError`, nothing is changed). ``enforce_overlap`` also sets an existing project's answers
    per task to ``annotators_per_task`` when it differs (``setup`` and the round do; a bot or a pull never)."""
    url = client_url(ls)
    pid = find_project(ls, title)
    if pid is None:
        return with_retries(lambda: ls.projects.create(
            title=title, label_config=config_xml, show_skip_button=True, maximum_annotations=annotators_per_task,
            overlap_cohort_percentage=100), url).id
    existing = with_retries(lambda: ls.projects.get(pid), url)
    if _normalise(existing.label_config) != _normalise(config_xml):
        raise ProjectError(f"{url}/projects/{pid}: project {title!r} exists with a different label config; "
                           "rename it or change projects.*_title in configs/labelstudio.yaml")
    if enforce_overlap and (existing.maximum_annotations or 1) != annotators_per_task:
        set_overlap(ls, pid, annotators_per_task)
    return pid


def setup_projects(ls: LabelStudio, cfg: ProjectsConfig, kinds: tuple[Kind, ...] = ("pairwise", "rating"),
                   enforce_overlap: bool = False) -> dict[str, int]:
    """Ensure both projects exist; ``{"pairwise": id, "rating": id}``. Running it twice changes nothing."""
    return {k: ensure_project(ls, project_title(k, cfg), label_config(k, cfg), cfg.annotators_per_pair,
                              enforce_overlap) for k in kinds}


def set_overlap(ls: LabelStudio, project_id: int, annotators_per_task: int) -> None:
    """Ask Label Studio for ``annotators_per_task`` annotations of every task (agreement needs >= 2)."""
    with_retries(lambda: ls.projects.update(project_id, maximum_annotations=annotators_per_task,
                                            overlap_cohort_percentage=100), client_url(ls))
