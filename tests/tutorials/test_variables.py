"""Variables filled in per student at display time: escaped, fixed namespace, typos stay visible."""

import pytest
from django.core.exceptions import PermissionDenied

from labs.models import InstanceMachine, Lab, LabInstance
from tutorials.rendering import render_markdown
from tutorials.variables import TutorialContext, fill_variables

CONTEXT = TutorialContext(
    {
        "user.username": "alice",
        "vm.web.ip": "10.0.0.5",
        "vm.web.user": "cirros",
        "vm.web.password": "s3cret-Pa55",
    }
)


def show(markdown_source: str, context: TutorialContext = CONTEXT) -> str:
    return fill_variables(render_markdown(markdown_source), context)


def test_known_variables_are_substituted():
    assert show("Hello {{ user.username }}, the server is {{ vm.web.ip }}.") == (
        "<p>Hello alice, the server is 10.0.0.5.</p>"
    )


@pytest.mark.parametrize(
    "written", ["{{vm.web.ip}}", "{{  vm.web.ip  }}", "{{\tvm.web.ip }}", "{{ vm.web.ip}}"]
)
def test_spacing_inside_the_braces_does_not_matter(written):
    assert show(written) == "<p>10.0.0.5</p>"


def test_variables_in_inline_code_are_filled_in():
    assert show("Run `ssh {{ vm.web.user }}@{{ vm.web.ip }}`") == (
        "<p>Run <code>ssh cirros@10.0.0.5</code></p>"
    )


def test_variables_in_fenced_code_are_filled_in_next_to_quotes():
    html = show('```bash\nsshpass -p "{{ vm.web.password }}" ssh {{ vm.web.user }}@{{ vm.web.ip }}\n```')
    assert 'sshpass -p "s3cret-Pa55" ssh cirros@10.0.0.5' in html


def test_variables_in_a_link_target_are_filled_in():
    assert show("[site](http://{{vm.web.ip}}:8080/)") == '<p><a href="http://10.0.0.5:8080/">site</a></p>'
    # Written with spaces, as in text: the same link (a host with spaces would not parse as a URL).
    assert show("[site](http://{{ vm.web.ip }}:8080/)") == '<p><a href="http://10.0.0.5:8080/">site</a></p>'


def test_unknown_variables_stay_visible_as_written():
    assert show("{{ vm.nope.ip }} {{ user.password }} {{ settings.SECRET_KEY }}") == (
        "<p>{{ vm.nope.ip }} {{ user.password }} {{ settings.SECRET_KEY }}</p>"
    )


@pytest.mark.parametrize(
    "hostile", ["<script>alert(1)</script>", '"><img src=x onerror=alert(1)>', "' onmouseover='alert(1)"]
)
def test_hostile_values_are_escaped_in_text_code_and_attributes(hostile):
    context = TutorialContext({"vm.web.password": hostile})
    html = show(
        "{{ vm.web.password }} `{{ vm.web.password }}` ![x{{ vm.web.password }}](/m.png)"
        ' [a](/x?p={{ vm.web.password }} "{{ vm.web.password }}")',
        context,
    )
    assert "<script" not in html
    assert "<img src=x" not in html
    assert "&lt;" in html or "&#x27;" in html
    assert html.count("<img") == 1
    assert "onmouseover='" not in html


def test_a_value_that_looks_like_a_variable_is_not_expanded_again():
    context = TutorialContext({"user.username": "{{ vm.web.password }}", "vm.web.password": "secret"})
    assert fill_variables("{{ user.username }}", context) == "{{ vm.web.password }}"


@pytest.mark.parametrize(
    "link",
    [
        "[x]({{ user.username }})",
        "[x](java{{ user.username }}script:alert(1))",
        "[x](java{{user.username}}script:alert(1))",
        "![x]({{ vm.web.ip }})",
    ],
)
def test_a_variable_can_never_choose_the_url_scheme(link):
    # A user name like "javascript:alert(1)" would otherwise become a script link at display time.
    html = show(link, TutorialContext({"user.username": "javascript:alert(1)", "vm.web.ip": "javascript:x"}))
    assert "href=" not in html
    assert "src=" not in html


def test_for_user_knows_only_the_user(student):
    assert fill_variables("{{ user.username }} {{ vm.web.ip }}", TutorialContext.for_user(student)) == (
        "alice {{ vm.web.ip }}"
    )


@pytest.fixture
def instance(student):
    lab = Lab.objects.create(name="Net", slug="net", namespace_prefix="net")
    instance = LabInstance.objects.create(lab=lab, owner=student, namespace="net-1")
    for order, name in enumerate(["web", "db"]):
        InstanceMachine.objects.create(
            instance=instance, name=name, image_reference="quay.io/x/y:1", cores=1, memory_mib=256,
            username=f"{name}user", password=f"{name}-pw", has_vnc=True, has_serial_console=True, order=order,
        )  # fmt: skip
    return instance


def test_for_instance_fills_each_machine_and_leaves_missing_ips_as_written(student, instance):
    context = TutorialContext.for_instance(student, instance, {"web": "10.0.0.5"})
    html = fill_variables(
        "{{ user.username }} {{ vm.web.ip }} {{ vm.web.user }} {{ vm.web.password }} "
        "{{ vm.db.ip }} {{ vm.db.user }} {{ vm.db.password }}",
        context,
    )
    assert html == "alice 10.0.0.5 webuser web-pw {{ vm.db.ip }} dbuser db-pw"


@pytest.mark.parametrize(
    "status",
    [
        LabInstance.Status.STOPPING,
        LabInstance.Status.STOPPED,
        LabInstance.Status.EXPIRED,
        LabInstance.Status.FAILED,
    ],
)
def test_an_instance_whose_machines_are_gone_fills_in_no_machine_variable(student, instance, status):
    instance.status = status
    context = TutorialContext.for_instance(student, instance, {"web": "10.0.0.5"})
    html = fill_variables(
        "{{ user.username }} {{ vm.web.ip }} {{ vm.web.user }} {{ vm.web.password }}", context
    )
    assert html == "alice {{ vm.web.ip }} {{ vm.web.user }} {{ vm.web.password }}"


def test_for_instance_refuses_other_students(other_student, instance):
    with pytest.raises(PermissionDenied):
        TutorialContext.for_instance(other_student, instance, {})


def test_for_instance_lets_staff_see_a_students_machines(instructor, instance):
    context = TutorialContext.for_instance(instructor, instance, {})
    assert fill_variables("{{ user.username }} {{ vm.db.password }}", context) == "ines db-pw"


def test_machine_variables_work_under_machine_and_the_older_vm_name(db, student, make_lab):
    from labs import lifecycle  # noqa: F401 - the models below come from the labs app
    from labs.models import InstanceMachine, LabInstance
    from tutorials.variables import TutorialContext, fill_variables, variable_names

    lab = make_lab(machines=0)
    instance = LabInstance.objects.create(
        lab=lab, owner=student, status=LabInstance.Status.RUNNING, namespace="v-1"
    )
    InstanceMachine.objects.create(
        instance=instance,
        name="tools",
        kind="container",
        image_reference="r/tools:1",
        cores=1,
        memory_mib=64,
        username="1000",
        password="",
        has_vnc=False,
        has_serial_console=False,
    )
    context = TutorialContext.for_instance(student, instance, {"tools": "10.244.0.7"})
    assert fill_variables("{{ machine.tools.ip }} {{ vm.tools.ip }}", context) == "10.244.0.7 10.244.0.7"
    assert "machine.tools.ip" in variable_names(["tools"])
    assert "vm.tools.ip" in variable_names(["tools"], with_old_names=True)
