# What libdeja links: found here for deja's build (REQUIRED), and again by
# the installed dejaConfig.cmake for a project that links the static library
# deja::deja_static (there quietly: deja::deja, the shared one, needs none of
# them). Sets DEJA_DEPS, the list of libraries to link.
if(NOT DEFINED deja_deps_mode)
  set(deja_deps_mode REQUIRED)
endif()
find_package(Threads ${deja_deps_mode})
foreach(dep PROTOBUFC:libprotobuf-c LMDB:lmdb ZSTD:libzstd XXHASH:libxxhash MHD:libmicrohttpd
            CURL:libcurl JANSSON:jansson NATS:libnats)
  string(REPLACE ":" ";" dep ${dep})
  list(GET dep 0 prefix)
  list(GET dep 1 module)
  if(NOT TARGET PkgConfig::${prefix})
    pkg_check_modules(${prefix} ${deja_deps_mode} IMPORTED_TARGET GLOBAL ${module})
  endif()
endforeach()
set(DEJA_DEPS PkgConfig::PROTOBUFC PkgConfig::LMDB PkgConfig::ZSTD PkgConfig::XXHASH
              Threads::Threads ${CMAKE_DL_LIBS} m PkgConfig::MHD PkgConfig::CURL PkgConfig::JANSSON
              PkgConfig::NATS)
