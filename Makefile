# regconsist_ros: two commands on a fresh machine.
#   make demo   - the main job on the embedded default world
#   make test   - the full test suite
# Both create/refresh .venv and install what is missing (apt packages, torch, ROS 2 wheels, the package).

PYTHON      ?= python3
VENV        ?= .venv
# Pinned, overridable: e.g. `make test TORCH_SPEC="torch==2.13.0 --index-url <your CUDA index>"` on a GPU box.
TORCH_SPEC  ?= torch==2.13.0
ROS_WHEELS  ?= ros-rclpy ros-sensor-msgs ros-geometry-msgs ros-std-msgs ros-nav-msgs ros-diagnostic-msgs ros-rmw-fastrtps-cpp
# colcon (the robot path's build tool) for the colcon-build test, in a folder of its own: colcon-core pins
# setuptools<80 and brings pytest plugins, which must not change the venv (tests/test_package.py)
COLCON_PACKAGES ?= colcon-core colcon-ros colcon-python-setup-py catkin-pkg
# Open3D needs libusb/libgomp; headless OpenGL (our GL renderer, MuJoCo in the readouts) needs
# EGL with Mesa's software driver (llvmpipe) or a GPU driver, and OSMesa for MuJoCo's fallback.
# Debian's headless Chromium (no GTK: ~96 MB download, ~306 MB installed, vs ~414 MB for `chromium`) and a
# font render the demo's report.html in its check and in tests/test_report_html.py.
APT_PACKAGES ?= libusb-1.0-0 libgomp1 libegl1 libgl1 libegl-mesa0 libgl1-mesa-dri libosmesa6 \
                chromium-headless-shell fonts-dejavu-core
PYTEST_ARGS ?= -n 2
DEMO_ARGS   ?= --demo.out runs/demo

BIN    := $(VENV)/bin
STAMP  := $(VENV)/.regconsist-installed

.PHONY: demo test setup apt clean

demo: setup
	$(BIN)/regconsist demo $(DEMO_ARGS)

test: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS)

setup: apt $(STAMP)

# Installs only the Debian packages that are missing (root, or sudo without a password).
apt:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "apt: installing$$missing"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then SUDO="sudo -n"; \
	  else echo "error: missing Debian packages:$$missing (run: sudo apt-get install$$missing)"; exit 1; fi; \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

$(STAMP): setup.py pyproject.toml Makefile
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check $(TORCH_SPEC)
	$(BIN)/python -m pip install -q --disable-pip-version-check $(ROS_WHEELS)
	$(BIN)/python -m pip install -q --disable-pip-version-check -e ".[io,readout,suites,test]"
	$(BIN)/python -m pip install -q --disable-pip-version-check --upgrade --target $(VENV)/colcon $(COLCON_PACKAGES)
	@touch $(STAMP)

clean:
	rm -rf $(VENV) runs build *.egg-info .pytest_cache
