"""Video question answering: LM folders, the tiny LM builder, QA tables, `align` and `eval-vqa`."""
