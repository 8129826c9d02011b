# mpi.bash: what every test that runs programs under mpirun shares (in a
# .bats file: `load mpi`).
#   need_mpirun      skips the test, saying why, when Open MPI's mpirun is
#                    not installed (apt-get install openmpi-bin)
#   mpi N CMD...     mpirun -np N CMD with the flags a small CI machine needs:
#                    --oversubscribe (more ranks than cores),
#                    --allow-run-as-root when root (CI containers), and -q
#                    (no Open MPI banner: a failing program's one line is
#                    the whole output)

need_mpirun() {
  command -v mpirun >/dev/null 2>&1 || skip "mpirun not installed (Open MPI: apt-get install openmpi-bin)"
}

# Containers often forbid the cross-process memory reads that Open MPI's
# shared-memory transport uses for large messages; copying through shared
# buffers works everywhere (the tests move little data).
export OMPI_MCA_btl_vader_single_copy_mechanism=${OMPI_MCA_btl_vader_single_copy_mechanism:-none}

mpi() {
  local n=$1
  shift
  local root=()
  [ "$(id -u)" = 0 ] && root=(--allow-run-as-root)
  mpirun -q --oversubscribe "${root[@]}" -np "$n" "$@"
}
