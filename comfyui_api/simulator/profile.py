"""Which ComfyUI release the simulator speaks as: one profile per version, each a set of wire behaviours measured
on that real release (0.3.64, and 0.33.0; see CHANGES-0.33 beside the reference captures).

Owns the version switches only; the handlers and nodes ask the profile instead of comparing version numbers.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ComfyProfile:
    version: str
    # POST /prompt refuses a prompt_id that is not a canonical lowercase UUID (400 invalid_prompt_id), checked
    # before the graph; `prompt_id: null` gets a fresh id instead of the string "None".
    uuid_prompt_ids: bool
    # a missing or unknown class_type is `missing_node_type` with node_id/class_type/node_title (was invalid_prompt)
    missing_node_type_errors: bool
    # a cycle lists `dependency_cycle` node errors (was an empty node_errors)
    cycle_node_errors: bool
    # value_not_in_list details show repr() of the received value
    repr_in_combo_details: bool
    # {"prompt": [...]} is a text 500 (was 400 prompt_no_outputs)
    list_prompt_is_500: bool
    # queue items and history keep extra_data.create_time (epoch ms)
    create_time: bool
    # GET /api/jobs, /api/jobs/{id}, POST /api/jobs/{id}/cancel and /api/jobs/cancel
    jobs_api: bool
    # /view serves script-capable types as attachments with nosniff and no-store
    safe_view_headers: bool
    # requests with Sec-Fetch-Site: cross-site are refused (403)
    cross_site_refused: bool
    # audio files are `<prefix>_00001.flac` (was `_00001_.flac`)
    plain_audio_names: bool
    # output nodes have pass-through outputs (SaveImage -> IMAGE) and object_info carries is_input_list,
    # has_intermediate_output and search_aliases
    v3_object_info: bool
    # /system_stats: os is sys.platform, plus comfy_package_versions and deploy_environment; /features grows
    new_system_keys: bool

    @property
    def frontend_version(self) -> str:
        return "1.49.6" if self.new_system_keys else "1.27.10"

    @property
    def templates_version(self) -> str:
        return "0.11.44" if self.new_system_keys else "0.1.95"


PROFILES: dict[str, ComfyProfile] = {
    "0.3.64": ComfyProfile(
        version="0.3.64",
        uuid_prompt_ids=False,
        missing_node_type_errors=False,
        cycle_node_errors=False,
        repr_in_combo_details=False,
        list_prompt_is_500=False,
        create_time=False,
        jobs_api=False,
        safe_view_headers=False,
        cross_site_refused=False,
        plain_audio_names=False,
        v3_object_info=False,
        new_system_keys=False,
    ),
    "0.33.0": ComfyProfile(
        version="0.33.0",
        uuid_prompt_ids=True,
        missing_node_type_errors=True,
        cycle_node_errors=True,
        repr_in_combo_details=True,
        list_prompt_is_500=True,
        create_time=True,
        jobs_api=True,
        safe_view_headers=True,
        cross_site_refused=True,
        plain_audio_names=True,
        v3_object_info=True,
        new_system_keys=True,
    ),
}
NEWEST = "0.33.0"


def profile_for(version: str) -> ComfyProfile:
    """The profile of one version; ValueError naming the known ones otherwise."""
    try:
        return PROFILES[version]
    except KeyError:
        raise ValueError(f"no simulator profile for ComfyUI {version!r}; known: {', '.join(PROFILES)}") from None
