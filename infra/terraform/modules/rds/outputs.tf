output "address" {
  description = "Host name of the instance."
  value       = aws_db_instance.this.address
}

output "port" {
  description = "PostgreSQL port."
  value       = aws_db_instance.this.port
}

output "database_name" {
  description = "Database Medic uses."
  value       = aws_db_instance.this.db_name
}

output "username" {
  description = "User Medic connects as."
  value       = aws_db_instance.this.username
}

output "password" {
  description = "Its password (goes to medic/<env>/rds-credentials only)."
  value       = random_password.master.result
  sensitive   = true
}

output "security_group_id" {
  description = "Security group of the instance."
  value       = aws_security_group.this.id
}
