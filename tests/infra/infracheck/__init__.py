"""Static checks of Medic's deployment code (workflows, image, Helm chart, alerts, Terraform).

Each check is a function that returns a list of problems (empty: the check passes), so a test
can run it on the real files and again on a temporary copy with a defect put back, and see it
fail. Tools that are not Python packages (helm, actionlint, checkov, promtool) are found by
``tools.require``, which fails with a message naming the install command when a tool is missing.
"""
