# Component `testing` of the emissions package: emissions::testing, the GoogleTest helpers.
# Read by emissionsConfig.cmake when a consumer asks for COMPONENTS testing; the core never
# looks for GoogleTest.
if(NOT TARGET GTest::gtest)
  if(emissions_FIND_QUIETLY)
    find_package(GTest QUIET)
  else()
    find_package(GTest)
  endif()
endif()
if(NOT TARGET GTest::gtest)
  set(emissions_testing_NOT_FOUND_MESSAGE
      "it needs GoogleTest, which was not found (on Debian: apt-get install libgtest-dev)")
  return()
endif()
include("${CMAKE_CURRENT_LIST_DIR}/emissionsTestingTargets.cmake")
set(emissions_testing_FOUND TRUE)
