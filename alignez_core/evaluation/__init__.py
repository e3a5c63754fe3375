"""Stage 5, evaluation: judged shifts with intervals against prompting, several axes together
(`composition`), and the HTML report."""
