"""Medic's built-in playbook step types, one module each, registered by ``plugin`` through the
``medic`` entry-point group exactly as a third party's step types are.

Each declares its ``name``, ``description`` and ``params_schema`` (what a step of its type may
say, checked when a playbook is saved). How steps run arrives with the playbook engine.
"""
