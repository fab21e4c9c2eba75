"""The package list, found rather than written down: every folder below the three source roots.

The source tree keeps the layout the user asked for (edgeresnet/, targets/, calibration/,
cli.py); installed, everything lives under the edgeresnet package. setuptools' own
`packages.find` cannot put a found package under another name, so the roots are mapped
here; the rest of the project's metadata is in pyproject.toml.
"""

from setuptools import find_namespace_packages, setup

# Installed package -> source folder.
ROOTS = {"edgeresnet": "edgeresnet", "edgeresnet.targets": "targets", "edgeresnet.calibration": "calibration"}


def packages() -> list[str]:
    found = []
    for package, folder in ROOTS.items():
        found.append(package)
        found += [f"{package}.{sub}" for sub in find_namespace_packages(where=folder, exclude=["*__pycache__*"])
                  if f"{package}.{sub}" not in ROOTS]
    return sorted(set(found))


setup(packages=packages(), package_dir=ROOTS)
