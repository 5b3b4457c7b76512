"""Reports from MLflow: Markdown + self-contained HTML with plots for ablations, searches and experiments."""

from ms2l_ray.report.build import Section, build_report, section_for

__all__ = ["Section", "build_report", "section_for"]
