"""`manage.py render_tutorials` refreshes saved HTML after the renderer changed."""

import pytest
from django.core.management import call_command

from tutorials.models import Step, TutorialPage

pytestmark = pytest.mark.django_db


def test_stale_html_is_rendered_again(make_tutorial, capsys):
    tutorial = make_tutorial("ospf")
    TutorialPage.objects.filter(tutorial=tutorial).update(body_html="<p>stale</p>")
    Step.objects.update(text_html="stale")
    call_command("render_tutorials")
    assert set(TutorialPage.objects.values_list("body_html", flat=True)) == {"<p>Text</p>"}
    assert "stale" not in "".join(Step.objects.values_list("text_html", flat=True))
    assert "2 tutorial pages rendered" in capsys.readouterr().out


def test_pages_over_a_lowered_limit_are_reported_and_the_rest_still_rendered(make_tutorial, settings, capsys):
    tutorial = make_tutorial("ospf", steps_per_page=(1,))
    TutorialPage.objects.create(tutorial=tutorial, title="Long", body_markdown="x" * 100)
    Step.objects.update(text_html="stale")
    settings.TUTORIAL_MARKDOWN_MAX_BYTES = 50
    with pytest.raises(SystemExit):
        call_command("render_tutorials")
    assert "the limit is 50\xa0bytes" in capsys.readouterr().err
    assert Step.objects.get().text_html == "<p>Do thing 0</p>"
