# Optional integrations: integrations/<name>/ (kafka, and later webhooks, postgres, http),
# each with its own CMakeLists.txt, include/, src/ and tests/, its own library target
# emissions::<name> and its own package component (find_package(emissions COMPONENTS
# <name>)). An integration's third-party dependency never reaches the core or its public
# headers; it is found once here and the result decides the option's default.
#
# In the top-level CMakeLists.txt:
#
#   emissions_integration(kafka PKG_CONFIG "rdkafka>=2.0"
#                         NEEDS "librdkafka (on Debian: apt-get install librdkafka-dev)")
#
# declares the cache option EMISSIONS_WITH_KAFKA = AUTO|ON|OFF (default AUTO):
#   AUTO  built when the dependency is found, skipped with a status message when not;
#   ON    built; a missing dependency stops the configure step with an error naming it;
#   OFF   not built, the dependency is not even looked for.
# When built, the dependency is the imported target EmissionsDep::<name>, and
# integrations/<name>/CMakeLists.txt is added; it declares its library and tests with
# emissions_integration_library() and emissions_integration_tests() below. The names of
# the integrations that are built are in the global property EMISSIONS_INTEGRATIONS, which
# EmissionsInstall.cmake reads to install each one as a package component.

include(GoogleTest)  # gtest_discover_tests, for emissions_integration_tests()
include(EmissionsFindDependency)

# emissions_integration(<name> PKG_CONFIG <module spec>... NEEDS <what to install>)
# emissions_integration(<name> FIND_PACKAGE <find_package args>... TARGETS <target>...
#                       NEEDS <what to install>)
#
# The dependency is found by emissions_find_integration_dependency()
# (EmissionsFindDependency.cmake), which the installed component file calls again with the
# same arguments in a consumer's build.
function(emissions_integration name)
  cmake_parse_arguments(PARSE_ARGV 1 arg "" "NEEDS" "PKG_CONFIG;FIND_PACKAGE;TARGETS")
  if(NOT arg_NEEDS OR (NOT arg_PKG_CONFIG AND NOT arg_FIND_PACKAGE)
     OR (arg_PKG_CONFIG AND arg_FIND_PACKAGE) OR (arg_FIND_PACKAGE AND NOT arg_TARGETS))
    message(FATAL_ERROR "emissions_integration(${name}): NEEDS and either PKG_CONFIG or "
                        "FIND_PACKAGE with TARGETS are required")
  endif()
  string(TOUPPER "${name}" upper)
  set(option EMISSIONS_WITH_${upper})
  set(${option} AUTO CACHE STRING
      "Build the ${name} integration: AUTO (when ${arg_NEEDS} is found), ON or OFF")
  set_property(CACHE ${option} PROPERTY STRINGS AUTO ON OFF)
  string(TOUPPER "${${option}}" mode)
  if(NOT mode MATCHES "^(AUTO|ON|OFF)$")
    message(FATAL_ERROR "${option} must be AUTO, ON or OFF (got '${${option}}')")
  endif()
  if(mode STREQUAL "OFF")
    message(STATUS "emissions: ${name} integration off (${option}=OFF)")
    return()
  endif()

  if(arg_PKG_CONFIG)
    set(how PKG_CONFIG ${arg_PKG_CONFIG})
    string(REPLACE ";" " " looked_for "pkg-config '${arg_PKG_CONFIG}'")
  else()
    set(how FIND_PACKAGE ${arg_FIND_PACKAGE} TARGETS ${arg_TARGETS})
    string(REPLACE ";" " " looked_for "find_package(${arg_FIND_PACKAGE})")
  endif()
  emissions_find_integration_dependency(${name} ${how})
  if(NOT TARGET EmissionsDep::${name})
    if(mode STREQUAL "ON")
      message(FATAL_ERROR "${option}=ON, but the ${name} integration needs ${arg_NEEDS}, looked "
                          "for with ${looked_for}, and it was not found. Install it, or "
                          "configure with -D${option}=AUTO or OFF.")
    endif()
    message(STATUS "emissions: ${name} integration not built: ${arg_NEEDS} (${looked_for}) "
                   "not found (${option}=AUTO)")
    return()
  endif()
  message(STATUS "emissions: ${name} integration built with ${looked_for} "
                 "${EMISSIONS_DEP_${upper}_VERSION} (${option}=${mode})")

  # What the component file needs to find the same dependency in a consumer's build.
  set_property(GLOBAL PROPERTY EMISSIONS_INTEGRATION_${upper}_FIND "${how}")
  set_property(GLOBAL PROPERTY EMISSIONS_INTEGRATION_${upper}_LOOKED_FOR "${looked_for}")
  set_property(GLOBAL PROPERTY EMISSIONS_INTEGRATION_${upper}_NEEDS "${arg_NEEDS}")
  set_property(GLOBAL APPEND PROPERTY EMISSIONS_INTEGRATIONS ${name})
  add_subdirectory(${PROJECT_SOURCE_DIR}/integrations/${name}
                   ${PROJECT_BINARY_DIR}/integrations/${name})
endfunction()

# emissions_integration_library(<name> SOURCES <file>...)
#
# In integrations/<name>/CMakeLists.txt: the library emissions_<name> (alias
# emissions::<name>, exported as emissions::<name>), with the public headers in include/
# and the sources in src/. It links the core publicly and the dependency privately, and may
# use the core's internal headers (src/common/wait.hpp and the like) privately.
function(emissions_integration_library name)
  cmake_parse_arguments(PARSE_ARGV 1 arg "" "" "SOURCES")
  string(TOUPPER "${name}" upper)
  set(target emissions_${name})
  add_library(${target} ${arg_SOURCES})
  add_library(emissions::${name} ALIAS ${target})
  target_include_directories(${target}
      PUBLIC $<BUILD_INTERFACE:${CMAKE_CURRENT_SOURCE_DIR}/include>
             $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>
      PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/src ${PROJECT_SOURCE_DIR}/src)
  target_link_libraries(${target} PUBLIC emissions PRIVATE EmissionsDep::${name})
  target_compile_features(${target} PUBLIC cxx_std_20)
  set_target_properties(${target} PROPERTIES EXPORT_NAME ${name} POSITION_INDEPENDENT_CODE ON)
  emissions_set_warnings(${target})
endfunction()

# emissions_integration_tests(<name> [PROPERTIES <property> <value>...])
#
# In integrations/<name>/CMakeLists.txt, when EMISSIONS_BUILD_TESTS is on: every
# tests/*_test.cpp (one file per unit) linked into emissions_<name>_tests, each TEST
# registered with CTest on its own, labelled <name>. Tests may use the dependency directly
# (a mock server, a plain client reading back what was sent) and the integration's src/.
# PROPERTIES are added to each test's (a fixture the tests require, their environment).
function(emissions_integration_tests name)
  cmake_parse_arguments(PARSE_ARGV 1 arg "" "" "PROPERTIES")
  string(TOUPPER "${name}" upper)
  file(GLOB tests CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/tests/*_test.cpp)
  if(NOT tests)
    return()
  endif()
  set(target emissions_${name}_tests)
  add_executable(${target} ${tests})
  target_include_directories(${target} PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/src
                             ${CMAKE_CURRENT_SOURCE_DIR}/tests ${PROJECT_SOURCE_DIR}/src)
  target_link_libraries(${target} PRIVATE emissions::${name} emissions::testing
                        emissions_test_support EmissionsDep::${name}
                        GTest::gmock GTest::gtest_main)
  emissions_set_warnings(${target})
  gtest_discover_tests(${target} DISCOVERY_TIMEOUT 120
                       PROPERTIES LABELS ${name} ${arg_PROPERTIES})
endfunction()

# emissions_integration_oom_tests(<name> <source>...)
#
# In integrations/<name>/CMakeLists.txt, when EMISSIONS_BUILD_TESTS is on: the out-of-memory
# tests (tests/oom/), in an executable of their own, emissions_<name>_oom_tests, because it
# replaces operator new (tests/support/oom/failing_allocations.hpp). Registered with CTest
# as emissions_integration_tests() registers its tests.
function(emissions_integration_oom_tests name)
  set(target emissions_${name}_oom_tests)
  add_executable(${target} ${ARGN})
  target_include_directories(${target} PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/src
                             ${CMAKE_CURRENT_SOURCE_DIR}/tests ${PROJECT_SOURCE_DIR}/src)
  target_link_libraries(${target} PRIVATE emissions::${name} emissions::testing
                        emissions_test_support emissions_failing_allocations
                        EmissionsDep::${name} GTest::gtest_main)
  emissions_set_warnings(${target})
  gtest_discover_tests(${target} DISCOVERY_TIMEOUT 120 PROPERTIES LABELS ${name})
endfunction()
