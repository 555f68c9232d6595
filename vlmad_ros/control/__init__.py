"""Path following without ROS: pure pursuit steering and PID speed control."""
