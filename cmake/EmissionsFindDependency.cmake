# emissions_find_integration_dependency(<name> PKG_CONFIG <module spec>...)
# emissions_find_integration_dependency(<name> FIND_PACKAGE <find_package args>...
#                                       TARGETS <imported target>...)
#
# Finds an optional integration's third-party dependency and, when found, defines the
# imported target EmissionsDep::<name> that carries it (usage requirements only). Used
# twice, with the same arguments: by EmissionsIntegration.cmake when emissions is built,
# and by the installed component file when a consumer asks for the component, so that
# both see the same dependency under the same name. Quiet: the caller reports.
#
#   emissions_find_integration_dependency(webhooks PKG_CONFIG "libcurl>=7.88" libcrypto)
#   emissions_find_integration_dependency(http FIND_PACKAGE Boost 1.74 CONFIG
#                                         TARGETS Boost::headers)
function(emissions_find_integration_dependency name)
  cmake_parse_arguments(PARSE_ARGV 1 arg "" "" "PKG_CONFIG;FIND_PACKAGE;TARGETS")
  set(dep EmissionsDep::${name})
  if(TARGET ${dep})
    return()
  endif()
  string(TOUPPER "${name}" upper)
  set(found_targets "")
  if(arg_PKG_CONFIG)
    find_package(PkgConfig QUIET)
    if(PkgConfig_FOUND)
      pkg_check_modules(EMISSIONS_DEP_${upper} QUIET IMPORTED_TARGET GLOBAL ${arg_PKG_CONFIG})
      if(TARGET PkgConfig::EMISSIONS_DEP_${upper})
        set(found_targets PkgConfig::EMISSIONS_DEP_${upper})
        set(EMISSIONS_DEP_${upper}_VERSION "${EMISSIONS_DEP_${upper}_VERSION}" PARENT_SCOPE)
      endif()
    endif()
  elseif(arg_FIND_PACKAGE)
    find_package(${arg_FIND_PACKAGE} QUIET)
    list(GET arg_FIND_PACKAGE 0 package)
    set(all_found TRUE)
    foreach(target IN LISTS arg_TARGETS)
      if(NOT TARGET ${target})
        set(all_found FALSE)
      endif()
    endforeach()
    if(${package}_FOUND AND all_found)
      set(found_targets ${arg_TARGETS})
      set(EMISSIONS_DEP_${upper}_VERSION "${${package}_VERSION}" PARENT_SCOPE)
    endif()
  endif()
  if(found_targets)
    add_library(${dep} INTERFACE IMPORTED GLOBAL)
    target_link_libraries(${dep} INTERFACE ${found_targets})
  endif()
endfunction()
