#!/usr/bin/env bash
# A real single-node OpenStack on this machine, for the OpenStack tier: keystone, glance (file
# store), placement, nova api / conductor / scheduler / compute with the libvirt driver
# (virt_type=qemu, the libvirtd scripts/services.sh starts), RabbitMQ, SQLite databases. The
# packages are Debian bookworm's Zed release (nova 26.2.2, keystone 22, glance 25, placement 8),
# fixed by the distribution (see README, OpenStack). Servers have no network: nova still lists
# ports and networks on rescue, unrescue and delete, and a stand-in answers those two listing
# calls with empty lists (nothing else is faked). Everything listens on 127.0.0.1 only.
#
# Usage: scripts/openstack.sh up|down|env|status
#   up      installs what is missing, writes the configuration under the state directory,
#           starts every service and creates the projects, users, endpoints and a flavor
#           (idempotent: what runs and exists is kept)
#   down    stops every process `up` started
#   env     prints OS_CLIENT_CONFIG_FILE and OS_CLOUD for the clouds.yaml `up` wrote (clouds
#           vmrescue-admin and vmrescue-member)
#   status  says what runs
# Env: VMRESCUE_OPENSTACK_DIR  the state directory (default /var/lib/vmrescue-openstack)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=scripts/lib.sh
. "$here/lib.sh"

state=${VMRESCUE_OPENSTACK_DIR:-/var/lib/vmrescue-openstack}
etc=$state/etc
run=$state/run
logs=$state/log
host=127.0.0.1
keystone_url=http://$host:5000/v3
# Debian's Zed packages; qemu-block-extra pairs with the backports QEMU scripts/setup.sh installs.
packages=(keystone glance-api placement-api nova-api nova-conductor nova-scheduler
  nova-compute-kvm rabbitmq-server python3-openstackclient)
bpo_packages=(qemu-block-extra)
services=(keystone glance placement nova-api nova-conductor nova-scheduler nova-compute network-standin)

need_root() { [ "$(id -u)" -eq 0 ] || die "openstack: run as root (it installs packages and starts services)"; }

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

install() {
  local missing=()
  for p in "${packages[@]}" "${bpo_packages[@]}"; do installed "$p" || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "openstack: installing Debian's OpenStack Zed packages (missing: ${missing[*]})"
  bash "$here/setup.sh" >/dev/null
  local bpo=()
  for p in "${bpo_packages[@]}"; do bpo+=("$p/bookworm-backports"); done
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${packages[@]}" \
    "${bpo[@]}" >"$logs/apt.log" 2>&1 || die "openstack: apt-get install failed; see $logs/apt.log"
}

# One password per service user, made once (readable by root only).
secret() {
  local f=$state/secrets/$1
  if [ ! -s "$f" ]; then
    (umask 077 && mkdir -p "$state/secrets" && head -c 18 /dev/urandom | base64 | tr -d '/+=' >"$f")
  fi
  cat "$f"
}

# SQLite in write-ahead-log mode: readers never block the writer (a service that reads in one
# transaction while it writes in another would otherwise wait out its lock and fail).
wal() { for db in "$@"; do python3 -c 'import sqlite3, sys; sqlite3.connect(sys.argv[1]).execute("PRAGMA journal_mode=WAL")' "$state/$db.sqlite"; done; }

pid_of() { [ -s "$run/$1.pid" ] && kill -0 "$(cat "$run/$1.pid")" 2>/dev/null && cat "$run/$1.pid"; }

# Starts NAME as COMMAND... in its own session, logging to $logs/NAME.log, unless it runs.
start() {
  local name=$1
  shift
  if pid_of "$name" >/dev/null; then return 0; fi
  log "openstack: starting $name"
  setsid "$@" </dev/null >>"$logs/$name.log" 2>&1 &
  echo $! >"$run/$name.pid"
}

# Waits until URL answers HTTP (any status), or fails naming NAME's log.
wait_http() {
  local name=$1 url=$2
  for _ in $(seq 1 150); do
    if curl -s -o /dev/null -m 2 "$url"; then return 0; fi
    pid_of "$name" >/dev/null || die "openstack: $name stopped; see $logs/$name.log"
    sleep 0.2
  done
  die "openstack: $name does not answer on $url; see $logs/$name.log"
}

# A section that authenticates as the service user USER in the service project.
auth_section() { # SECTION USER [EXTRA LINE...]
  printf '[%s]\nauth_url = http://%s:5000/\nauth_type = password\n' "$1" "$host"
  printf 'project_domain_name = Default\nuser_domain_name = Default\nproject_name = service\n'
  printf 'username = %s\npassword = %s\n' "$2" "$(secret "$2")"
  shift 2
  [ $# -eq 0 ] || printf '%s\n' "$@"
}
authtoken() { auth_section keystone_authtoken "$1" "www_authenticate_uri = http://$host:5000/"; }

write_config() {
  mkdir -p "$etc/keystone" "$etc/glance" "$etc/placement" "$etc/nova" "$state/keystone" \
    "$state/images" "$state/nova/instances" "$state/lock"
  # libvirt's QEMU (its own user) reaches the instances' disks through here.
  chmod 0755 "$state" "$state/nova" "$state/nova/instances"
  cat >"$etc/keystone/keystone.conf" <<EOF
[DEFAULT]
log_dir = $logs
[database]
connection = sqlite:///$state/keystone.sqlite
[token]
provider = fernet
[fernet_tokens]
key_repository = $state/keystone/fernet-keys
[fernet_receipts]
key_repository = $state/keystone/fernet-keys
[credential]
key_repository = $state/keystone/credential-keys
EOF
  {
    cat <<EOF
[DEFAULT]
bind_host = $host
bind_port = 9292
workers = 1
log_file = $logs/glance-api.log
[database]
connection = sqlite:///$state/glance.sqlite
[paste_deploy]
flavor = keystone
config_file = /etc/glance/glance-api-paste.ini
[glance_store]
stores = file
default_store = file
filesystem_store_datadir = $state/images
[oslo_concurrency]
lock_path = $state/lock
EOF
    authtoken glance
  } >"$etc/glance/glance-api.conf"
  {
    cat <<EOF
[DEFAULT]
log_file = $logs/placement-api.log
[placement_database]
connection = sqlite:///$state/placement.sqlite
[api]
auth_strategy = keystone
EOF
    authtoken placement
  } >"$etc/placement/placement.conf"
  {
    cat <<EOF
[DEFAULT]
transport_url = rabbit://openstack:$(secret rabbit)@$host:5672/
my_ip = $host
host = $(hostname)
enabled_apis = osapi_compute
osapi_compute_listen = $host
osapi_compute_workers = 1
state_path = $state/nova
instances_path = $state/nova/instances
compute_driver = libvirt.LibvirtDriver
# A stopped server stops at once: a test never waits for a guest to shut itself down.
shutdown_timeout = 0
[api]
auth_strategy = keystone
[api_database]
connection = sqlite:///$state/nova_api.sqlite
[database]
connection = sqlite:///$state/nova.sqlite
[conductor]
workers = 1
[scheduler]
workers = 1
[glance]
api_servers = http://$host:9292
[libvirt]
virt_type = qemu
connection_uri = qemu:///system
cpu_mode = custom
cpu_models = Nehalem
[oslo_concurrency]
lock_path = $state/lock
[vnc]
enabled = false
[spice]
enabled = false
EOF
    auth_section service_user nova "send_service_user_token = true"
    authtoken nova
    auth_section placement placement "region_name = RegionOne"
    auth_section neutron neutron "region_name = RegionOne"
  } >"$etc/nova/nova.conf"
  chmod 0600 "$etc/keystone/keystone.conf" "$etc/glance/glance-api.conf" \
    "$etc/placement/placement.conf" "$etc/nova/nova.conf"
}

# RabbitMQ runs as its own user (Debian's wrappers switch to it): its files in its directory.
rabbit_env() {
  export RABBITMQ_NODE_IP_ADDRESS=$host ERL_EPMD_ADDRESS=$host RABBITMQ_NODENAME=vmrescue@localhost
  export RABBITMQ_MNESIA_BASE=$state/rabbitmq/mnesia RABBITMQ_LOG_BASE=$state/rabbitmq/log
  export RABBITMQ_PID_FILE=$state/rabbitmq/pid
}

rabbit() {
  rabbit_env
  mkdir -p "$state/rabbitmq/mnesia" "$state/rabbitmq/log"
  chown -R rabbitmq: "$state/rabbitmq"
  if ! rabbitmqctl -q status >/dev/null 2>&1; then
    log "openstack: starting rabbitmq"
    setsid rabbitmq-server </dev/null >>"$logs/rabbitmq.log" 2>&1 &
    rabbitmqctl -q wait --timeout 90 "$RABBITMQ_PID_FILE" >/dev/null 2>&1 ||
      die "openstack: rabbitmq did not start; see $logs/rabbitmq.log and $state/rabbitmq/log"
  fi
  rabbitmqctl -q list_users | grep -q '^openstack' ||
    rabbitmqctl -q add_user openstack "$(secret rabbit)" >/dev/null
  rabbitmqctl -q set_permissions openstack '.*' '.*' '.*' >/dev/null
}

keystone() {
  local conf=$etc/keystone/keystone.conf
  keystone-manage --config-file "$conf" db_sync
  wal keystone
  keystone-manage --config-file "$conf" fernet_setup --keystone-user root --keystone-group root
  keystone-manage --config-file "$conf" credential_setup --keystone-user root --keystone-group root
  keystone-manage --config-file "$conf" bootstrap --bootstrap-password "$(secret admin)" \
    --bootstrap-admin-url "http://$host:5000/v3/" --bootstrap-internal-url "http://$host:5000/v3/" \
    --bootstrap-public-url "http://$host:5000/v3/" --bootstrap-region-id RegionOne >/dev/null
  start keystone uwsgi --plugin python3 \
    --http-socket "$host:5000" --wsgi-file /usr/bin/keystone-wsgi-public --master --die-on-term --processes 1 --threads 1 --add-header 'Connection: close' \
    --env "OS_KEYSTONE_CONFIG_FILES=$conf"
  wait_http keystone "http://$host:5000/v3"
}

admin_env() {
  export OS_AUTH_URL=$keystone_url OS_IDENTITY_API_VERSION=3 OS_USERNAME=admin
  OS_PASSWORD=$(secret admin)
  export OS_PASSWORD OS_PROJECT_NAME=admin OS_USER_DOMAIN_NAME=Default OS_PROJECT_DOMAIN_NAME=Default
  export OS_REGION_NAME=RegionOne
}

# The catalog, users and projects (each made once).
identity() {
  admin_env
  local have
  have=$(openstack project list -f value -c Name)
  grep -qx service <<<"$have" || openstack project create --domain default service >/dev/null
  grep -qx demo <<<"$have" || openstack project create --domain default demo >/dev/null
  have=$(openstack user list -f value -c Name)
  for u in nova glance placement neutron; do
    if ! grep -qx "$u" <<<"$have"; then
      openstack user create --domain default --password "$(secret "$u")" "$u" >/dev/null
      openstack role add --project service --user "$u" admin
    fi
  done
  if ! grep -qx demo <<<"$have"; then
    openstack user create --domain default --password "$(secret demo)" demo >/dev/null
    openstack role add --project demo --user demo member
  fi
  have=$(openstack service list -f value -c Type)
  local type name port path
  while read -r type name port path; do
    grep -qx "$type" <<<"$have" && continue
    openstack service create --name "$name" "$type" >/dev/null
    for iface in public internal admin; do
      openstack endpoint create --region RegionOne "$type" "$iface" "http://$host:$port$path" >/dev/null
    done
  done <<EOF
image glance 9292 /
placement placement 8778 /
compute nova 8774 /v2.1
network neutron 9696 /
EOF
}

glance() {
  glance-manage --config-file "$etc/glance/glance-api.conf" db_sync >/dev/null 2>&1
  wal glance
  start glance glance-api --config-file "$etc/glance/glance-api.conf"
  wait_http glance "http://$host:9292/"
}

placement() {
  placement-manage --config-file "$etc/placement/placement.conf" db sync
  wal placement
  start placement uwsgi --plugin python3 --http-socket "$host:8778" \
    --wsgi-file /usr/bin/placement-api --master --die-on-term --processes 1 --threads 1 --add-header 'Connection: close' \
    --env "OS_PLACEMENT_CONFIG_DIR=$etc/placement"
  wait_http placement "http://$host:8778/"
}

# Answers nova's listing of ports and networks with empty lists; anything else is a 404.
network_standin() {
  start network-standin python3 "$here/openstack-network-standin.py" "$host" 9696
  wait_http network-standin "http://$host:9696/"
}

nova() {
  local conf=$etc/nova/nova.conf
  nova-manage --config-file "$conf" api_db sync
  nova-manage --config-file "$conf" cell_v2 list_cells 2>/dev/null | grep -q ' cell0 ' ||
    nova-manage --config-file "$conf" cell_v2 map_cell0 \
      --database_connection "sqlite:///$state/nova_cell0.sqlite"
  nova-manage --config-file "$conf" cell_v2 list_cells 2>/dev/null | grep -q ' cell1 ' ||
    nova-manage --config-file "$conf" cell_v2 create_cell --name cell1 --verbose >/dev/null
  nova-manage --config-file "$conf" db sync
  wal nova_api nova_cell0 nova
  start nova-api nova-api --config-file "$conf"
  start nova-conductor nova-conductor --config-file "$conf"
  start nova-scheduler nova-scheduler --config-file "$conf"
  start nova-compute nova-compute --config-file "$conf"
  wait_http nova-api "http://$host:8774/"
  # The compute host appears in placement, then is mapped into cell1.
  for _ in $(seq 1 120); do
    if nova-manage --config-file "$conf" cell_v2 discover_hosts 2>/dev/null &&
      nova-manage --config-file "$conf" cell_v2 list_hosts 2>/dev/null | grep -q cell1; then
      break
    fi
    pid_of nova-compute >/dev/null || die "openstack: nova-compute stopped; see $logs/nova-compute.log"
    sleep 1
  done
  admin_env
  openstack flavor show vmrescue.tiny >/dev/null 2>&1 ||
    openstack flavor create --ram 512 --disk 1 --vcpus 1 vmrescue.tiny >/dev/null
}

clouds_yaml() {
  (
    umask 077
    cat >"$state/clouds.yaml" <<EOF
clouds:
  vmrescue-admin:
    auth:
      auth_url: $keystone_url
      username: admin
      password: $(secret admin)
      project_name: admin
      user_domain_name: Default
      project_domain_name: Default
    region_name: RegionOne
    identity_api_version: 3
  vmrescue-member:
    auth:
      auth_url: $keystone_url
      username: demo
      password: $(secret demo)
      project_name: demo
      user_domain_name: Default
      project_domain_name: Default
    region_name: RegionOne
    identity_api_version: 3
EOF
  )
}

up() {
  need_root
  mkdir -p "$run" "$logs"
  install
  bash "$here/services.sh"
  write_config
  rabbit
  keystone
  identity
  glance
  placement
  network_standin
  nova
  clouds_yaml
  log "openstack: up; eval \"\$($0 env)\" for the admin cloud"
}

down() {
  need_root
  local stopping=()
  for s in "${services[@]}"; do
    local pid
    if pid=$(pid_of "$s"); then
      log "openstack: stopping $s"
      kill -- "-$pid" 2>/dev/null || kill "$pid" 2>/dev/null || true
      stopping+=("$pid")
    fi
    rm -f "$run/$s.pid"
  done
  # Each gets 30 s to end its own way (eventlet services finish their work), then is killed.
  for pid in "${stopping[@]}"; do
    for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -0 "$pid" 2>/dev/null && kill -KILL -- "-$pid" 2>/dev/null
  done
  rabbit_env
  if [ -s "$RABBITMQ_PID_FILE" ]; then
    log "openstack: stopping rabbitmq"
    rabbitmqctl -q stop "$RABBITMQ_PID_FILE" >/dev/null 2>&1 || true
  fi
  # RabbitMQ's port mapper, which it started.
  epmd -kill >/dev/null 2>&1 || true
}

status() {
  for s in "${services[@]}"; do
    if pid=$(pid_of "$s"); then echo "$s: running (pid $pid)"; else echo "$s: stopped"; fi
  done
}

case ${1:-} in
  up) up ;;
  down) down ;;
  env)
    [ -s "$state/clouds.yaml" ] || die "openstack: not set up; run $0 up"
    printf 'export OS_CLIENT_CONFIG_FILE=%s\nexport OS_CLOUD=vmrescue-admin\n' "$state/clouds.yaml"
    ;;
  status) status ;;
  *) die "usage: $0 up|down|env|status" ;;
esac
