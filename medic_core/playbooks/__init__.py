"""Playbooks: versioned remediation definitions (docs/playbooks.md).

``steptypes`` (the step types loaded from ``medic_step_types``), ``schema`` (the playbook JSON
Schema composed from the envelope and every step type's ``params_schema``), ``definition``
(reading YAML/JSON text and reporting every error with its path), ``registry`` (``Playbooks``:
apply, versions, read, list, delete). The engine that runs playbooks lands with its own step.
"""

from medic_core.playbooks.definition import InvalidPlaybook, Validator
from medic_core.playbooks.registry import Applied, Playbooks
from medic_core.playbooks.steptypes import StepTypeError, StepTypes

__all__ = ["Applied", "InvalidPlaybook", "Playbooks", "StepTypeError", "StepTypes", "Validator"]
